"""The whole experiment config and its cross-section checks; :func:`loggable` for MLflow."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    model_validator,
)

from ragsweep.judges.builtin import JUDGES
from ragsweep.judges.scoring import JUDGE_PREFIX
from ragsweep.pipelines.base.errors import BadInput
from ragsweep.pipelines.base.registry import did_you_mean
from ragsweep.pipelines.base.secrets import MASK, SECRETS
from ragsweep.pipelines.embedders.local import DEFAULT_EMBEDDER, check_model_folder
from ragsweep.pipelines.prompts import load_templates
from ragsweep.pipelines.rerank import RERANKERS
from ragsweep.search.config.endpoints import (
    LLMSettings,
    ModelEndpoint,
    PipelineSettings,
)
from ragsweep.search.config.fields import (
    CwdPath,
)
from ragsweep.search.config.judging import (
    JudgeSettings,
    Objective,
)
from ragsweep.search.config.sections import (
    DatasetSettings,
    MLflowSettings,
    PromotionSettings,
    SearchSettings,
)
from ragsweep.search.registries import SAMPLERS
from ragsweep.search.schema import (
    Strict as _Strict,
)
from ragsweep.search.space import SearchSpace, baseline_point, grid_points


class ExperimentConfig(_Strict):
    dataset: DatasetSettings
    space: SearchSpace = SearchSpace()
    pipeline: PipelineSettings = PipelineSettings()
    llm: LLMSettings = LLMSettings()
    judges: JudgeSettings = JudgeSettings()
    objective: Objective = Objective()
    search: SearchSettings = SearchSettings()
    mlflow: MLflowSettings = MLflowSettings()
    promotion: PromotionSettings = PromotionSettings()
    storage_dir: CwdPath = Field(
        Path("ragsweep-runs"), validate_default=True, description="Ray results, caches, default MLflow store"
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> ExperimentConfig:
        self._check_named_models()
        needs_model = [r for r in self.space.reranker if RERANKERS.entry(r).info["needs_model"]]
        if needs_model and self.pipeline.reranker_model is None:
            raise ValueError(f"space.reranker includes {needs_model[0]!r} but pipeline.reranker_model is not set")
        templates = load_templates(self.pipeline.prompts_file)
        for name in self.space.prompt:
            if name not in templates:
                hint = difflib.get_close_matches(name, list(templates), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ValueError(f"space.prompt: unknown template {name!r}{extra}; known: {', '.join(templates)}")
        self._check_judged_metrics()
        if SAMPLERS.entry(self.search.sampler).info.get("needs_cost") and self.objective.cost is None:
            raise ValueError(
                f"search.sampler {self.search.sampler!r} is for multi-objective searches: set "
                "objective.cost, or use tpe"
            )
        if self.search.sampler == "grid":
            grid_points(self.space)  # raises ValueError naming a key that cannot be a grid
        if self.search.baseline is not None:
            baseline_point(self.space, self.search.baseline)  # raises ValueError naming a bad key or value
        return self

    def _check_named_models(self) -> None:
        """Generators and embedders that space and pipeline name are defined (or, for embedders, model folders)."""
        for i, name in enumerate(self.space.generator or []):
            if name not in self.llm.generators:
                known = ", ".join(self.llm.generators) or "nothing (llm.generators is empty)"
                raise ValueError(
                    f"space.generator.{i}: {name!r} is not defined in llm.generators"
                    f"{did_you_mean(name, list(self.llm.generators))}; it defines: {known}"
                )
        defined = self.pipeline.embedders
        for name in defined:
            if name == DEFAULT_EMBEDDER or "/" in name:
                raise ValueError(f"pipeline.embedders.{name}: a name, not 'default' or a path")
        for where, name in [
            ("pipeline.embedder", self.pipeline.embedder),
            *((f"space.embedder.{i}", n) for i, n in enumerate(self.space.embedder or [])),
        ]:
            if name != DEFAULT_EMBEDDER and name not in defined:
                try:
                    check_model_folder(Path(name).expanduser(), "embedder")
                except BadInput as e:
                    names = f"; pipeline.embedders defines: {', '.join(defined)}" if defined else ""
                    raise ValueError(
                        f"{where}: {name!r} is not 'default', a name from pipeline.embedders or a model "
                        f"folder ({e}){names}"
                    ) from None

    def _check_judged_metrics(self) -> None:
        """Every judge_<name> that objective.weights or promotion.min_metrics reads is computed by a judge."""
        judged = self.judges.metrics
        for name in [*self.objective.weights, *self.promotion.min_metrics]:
            if name.startswith(JUDGE_PREFIX) and name not in judged:
                builtin = name.removeprefix(JUDGE_PREFIX)
                hint = difflib.get_close_matches(name, judged, n=1)
                extra = (
                    f" (add {builtin} to judges.suite)"
                    if builtin in JUDGES
                    else f" (did you mean {hint[0]!r}?)"
                    if hint
                    else ""
                )
                where = "objective.weights" if name in self.objective.weights else "promotion.min_metrics"
                raise ValueError(
                    f"{where}: {name!r} is not computed by the configured judges{extra}; "
                    f"judges give: {', '.join(judged) or 'nothing (judges.suite is empty)'}"
                )

    @property
    def judge_endpoint(self) -> ModelEndpoint:
        return self.llm.judge or self.llm.generator

    def secret_values(self) -> list[str]:
        """What must never be logged: every ``llm.<endpoint>.env`` value, the values of the variables
        ``api_key_env`` names, and the passwords in the config's URIs."""
        import os
        from urllib.parse import urlsplit

        out: list[str] = []
        for ep in (self.llm.generator, self.llm.judge, *self.llm.generators.values()):
            if ep is not None:
                out += list(ep.env.values())
                if ep.api_key_env and os.environ.get(ep.api_key_env):
                    out.append(os.environ[ep.api_key_env])
        out += [os.environ[k] for k in ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN") if os.environ.get(k)]
        uris = [
            self.mlflow.tracking_uri,
            self.pipeline.qdrant_url,
            self.search.storage_path,
            *(
                ep.base_url
                for ep in (self.llm.generator, self.llm.judge, *self.llm.generators.values())
                if ep is not None
            ),
            *(e.base_url for e in self.pipeline.embedders.values()),
        ]
        out += [p for p in (urlsplit(u).password for u in uris if u) if p]
        return out

    @property
    def index_cache(self) -> Path:
        """One folder per index key under storage_dir, shared by trials, the champion and ``evaluate --run``."""
        return (self.storage_dir / "index-cache").resolve()


def loggable(model: BaseModel) -> dict[str, Any]:
    """``model`` as JSON-ready data for MLflow: every ``env`` mapping's values masked, and secrets masked
    everywhere else (:data:`SECRETS`)."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: ({n: MASK for n in v} if k == "env" and isinstance(v, dict) else walk(v)) for k, v in value.items()
            }
        return [walk(v) for v in value] if isinstance(value, list) else value

    return SECRETS.deep(walk(model.model_dump(mode="json")))
