"""The champion as an MLflow pyfunc: log a trial's pipeline as a registered model version, load it, answer.

Contract: :func:`register_version` logs a pyfunc (:class:`RagChampion`) into the winning trial's run with
everything it needs to rebuild the pipeline offline (trial config, prompt text, the corpus) and registers it
under ``model_name``; which alias it gets is :mod:`search.promote`'s decision. :class:`RagChampion` takes a
DataFrame with a ``question`` column and returns ``answer`` and ``sources`` (JSON) columns.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc.model import PythonModel
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from ragsweep.pipelines.data import file_digest, load_corpus
from ragsweep.pipelines.index import IndexCache
from ragsweep.pipelines.prompts import PromptTemplate
from ragsweep.search.assemble import build_pipeline
from ragsweep.search.config import ModelEndpoint, PipelineSettings
from ragsweep.search.serving.servers import serve
from ragsweep.search.space import TrialParams

CHAMPION = "champion"
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "question")]),
    outputs=Schema([ColSpec("string", "answer"), ColSpec("string", "sources")]),
)


class RagChampion(PythonModel):
    """Rebuilds the winning pipeline offline (starting its own llama.cpp server when the engine is llama.cpp)."""

    # The model is logged with an explicit SIGNATURE; skip MLflow's type-hint wrapping of predict (and its warning).
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        spec = json.loads(Path(context.artifacts["config"]).read_text())
        corpus_path = Path(context.artifacts["corpus"])
        params = TrialParams.model_validate(spec["params"])
        settings = PipelineSettings.model_validate({**spec["pipeline"], "prompts_file": None})
        generator = ModelEndpoint.model_validate(spec["generator"])
        self._stack = contextlib.ExitStack()
        atexit.register(self._stack.close)
        log_dir = Path(tempfile.gettempdir()) / "ragsweep-champion-logs"
        endpoints = self._stack.enter_context(serve(generator, None, log_dir))
        cache = IndexCache(Path.home() / ".cache" / "ragsweep" / "index")
        prompt = PromptTemplate(spec["prompt"]["name"], spec["prompt"]["system"], spec["prompt"]["user"])
        self.pipeline = build_pipeline(params, settings, load_corpus(corpus_path), file_digest(corpus_path),
                                       cache, endpoints.generator.client(), seed=spec.get("seed", 0),
                                       prompt=prompt).pipeline

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        if isinstance(model_input, pd.DataFrame):
            questions = [str(q) for q in model_input["question"]]
        elif isinstance(model_input, str):
            questions = [model_input]
        else:
            questions = [str(q) for q in model_input]
        answers, _ = self.pipeline.answer(questions)
        return pd.DataFrame({
            "answer": [a.answer for a in answers],
            "sources": [json.dumps([{"doc_id": h.chunk.doc_id, "start": h.chunk.start, "end": h.chunk.end,
                                     "score": round(h.score, 4), "text": h.chunk.text} for h in a.hits])
                        for a in answers],
        })

    def close(self) -> None:
        self._stack.close()


def register_version(run_id: str, champion_spec: dict[str, Any], corpus_path: Path, model_name: str,
                     tags: dict[str, str]) -> str:
    """Log the pyfunc into ``run_id`` and register it under ``model_name`` (no alias); return the version."""
    with tempfile.TemporaryDirectory() as d:
        config_path = Path(d) / "champion.json"
        config_path.write_text(json.dumps(champion_spec, indent=2))
        with mlflow.start_run(run_id=run_id, nested=True):
            info = mlflow.pyfunc.log_model(
                name="rag_pipeline",
                python_model=RagChampion(),
                artifacts={"config": str(config_path), "corpus": str(corpus_path)},
                signature=SIGNATURE,
                registered_model_name=model_name,
                # Explicit requirements: inferring them would load the model (and start a server).
                pip_requirements=["ragsweep", f"mlflow=={mlflow.__version__}"],
            )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for k, v in tags.items():
        client.set_model_version_tag(model_name, version, k, v)
    return version


def load_champion(model_name: str, alias: str = CHAMPION) -> Any:
    return mlflow.pyfunc.load_model(f"models:/{model_name}@{alias}")
