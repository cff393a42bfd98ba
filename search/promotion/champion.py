"""The champion as an MLflow pyfunc: log a trial's pipeline as a registered model version, load it, answer.

Contract: :func:`register_version` logs a pyfunc (:class:`RagChampion`) into the winning trial's run with
everything it needs to rebuild the pipeline offline (trial config, prompt text, the corpus, the built index) and
registers it under ``model_name``; which alias it gets is :mod:`ragsweep.search.promotion.registry`'s decision.
:class:`RagChampion` takes a DataFrame with a ``question`` column and returns ``answer`` and ``sources`` (JSON) columns.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc.model import PythonModel
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from ragsweep.pipelines.base.secrets import MASK
from ragsweep.pipelines.data import file_digest, load_corpus
from ragsweep.pipelines.index import IndexCache, read_index
from ragsweep.pipelines.prompts import PromptTemplate
from ragsweep.search.assemble import build_pipeline
from ragsweep.search.config import ModelEndpoint, PipelineSettings
from ragsweep.search.serving.servers import serve
from ragsweep.search.space import TrialParams

CHAMPION = "champion"
# Where a champion logged without its index builds one: the CLI sets it to the config's <storage_dir>/index-cache;
# a model loaded by plain MLflow (no config) falls back to ~/.cache/ragsweep/index.
INDEX_CACHE_ENV = "RAGSWEEP_INDEX_CACHE"
MODEL_CODE = Path(__file__).with_name("champion_model.py")  # MLflow models from code: it calls set_model
INPUT_EXAMPLE = "What is this corpus about?"
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "question")]),
    outputs=Schema([ColSpec("string", "answer"), ColSpec("string", "sources")]),
)


def unmasked_env(endpoint: dict[str, Any]) -> dict[str, str]:
    """The server environment of a logged endpoint: values were masked when logged (secrets never reach MLflow),
    so a masked value is taken from this process's environment variable of the same name, or left out."""
    env = endpoint.get("env") or {}
    return {k: (os.environ[k] if v == MASK else v) for k, v in env.items() if v != MASK or k in os.environ}


class RagChampion(PythonModel):
    """Rebuilds the winning pipeline offline (starting its own llama.cpp server when the engine is llama.cpp)."""

    # The model is logged with an explicit SIGNATURE; skip MLflow's type-hint wrapping of predict (and its warning).
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        t0 = time.perf_counter()
        spec = json.loads(Path(context.artifacts["config"]).read_text())
        corpus_path = Path(context.artifacts["corpus"])
        params = TrialParams.model_validate(spec["params"])
        settings = PipelineSettings.model_validate({**spec["pipeline"], "prompts_file": None})
        generator = ModelEndpoint.model_validate({**spec["generator"], "env": unmasked_env(spec["generator"])})
        self._stack = contextlib.ExitStack()
        atexit.register(self._stack.close)
        # One folder per user: a shared name in /tmp made by another user (a cluster node's other account) is not
        # writable, and the model then loaded without its server's log (seen over `ray submit`).
        user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
        log_dir = Path(tempfile.gettempdir()) / f"ragsweep-champion-logs-{user}"
        t1 = time.perf_counter()
        endpoints = self._stack.enter_context(serve(generator, None, log_dir))
        t2 = time.perf_counter()
        # The index the search built travels with the model; versions logged before it did are rebuilt once.
        index = read_index(Path(context.artifacts["index"])) if "index" in context.artifacts else None
        cache = IndexCache(Path(os.environ.get(INDEX_CACHE_ENV) or Path.home() / ".cache" / "ragsweep" / "index"))
        prompt = PromptTemplate(spec["prompt"]["name"], spec["prompt"]["system"], spec["prompt"]["user"])
        built = build_pipeline(
            params,
            settings,
            load_corpus(corpus_path),
            file_digest(corpus_path),
            cache,
            endpoints.generator.client(),
            seed=spec.get("seed", 0),
            prompt=prompt,
            index=index,
            max_tokens=generator.max_tokens,
        )
        self.pipeline = built.pipeline
        self.timings = {"read_config_s": t1 - t0, "server_start_s": t2 - t1, **built.timings}

    # No type hints on predict: MLflow would infer a signature from them (we log SIGNATURE) and warn.
    def predict(self, context, model_input, params=None):
        if isinstance(model_input, pd.DataFrame):
            questions = [str(q) for q in model_input["question"]]
        elif isinstance(model_input, str):
            questions = [model_input]
        else:
            questions = [str(q) for q in model_input]
        t0 = time.perf_counter()
        answers, _ = self.pipeline.answer(questions)
        self.timings["answer_s"] = time.perf_counter() - t0
        return pd.DataFrame(
            {
                "answer": [a.answer for a in answers],
                "sources": [
                    json.dumps(
                        [
                            {
                                "doc_id": h.chunk.doc_id,
                                "start": h.chunk.start,
                                "end": h.chunk.end,
                                "score": round(h.score, 4),
                                "text": h.chunk.text,
                            }
                            for h in a.hits
                        ]
                    )
                    for a in answers
                ],
            }
        )

    def close(self) -> None:
        self._stack.close()


def register_version(
    run_id: str,
    champion_spec: dict[str, Any],
    corpus_path: Path,
    model_name: str,
    tags: dict[str, str],
    index_folder: Path | None = None,
) -> str:
    """Log the pyfunc into ``run_id`` and register it under ``model_name`` (no alias); return the version.

    The model is logged from code (``champion_model.py``, no pickled object) with the pipeline's config, the corpus
    and, when given, the built ``index_folder``, so loading it reads the index instead of embedding the corpus.
    MLflow validates the logged model on an input example: it loads it and answers one question, here.
    """
    artifacts = {"config": "", "corpus": str(corpus_path)}
    if index_folder is not None and (index_folder / "meta.json").exists():
        artifacts["index"] = str(index_folder)
    with tempfile.TemporaryDirectory() as d:
        config_path = Path(d) / "champion.json"
        config_path.write_text(json.dumps(champion_spec, indent=2))
        artifacts["config"] = str(config_path)
        # The run's own experiment made active first: a process that set another one earlier (generate-questions'
        # testsets, a caller's mlflow.set_experiment) would make start_run(run_id) refuse the parent run.
        mlflow.set_experiment(experiment_id=mlflow.MlflowClient().get_run(run_id).info.experiment_id)
        with mlflow.start_run(run_id=run_id, nested=True):
            info = mlflow.pyfunc.log_model(
                name="rag_pipeline",
                python_model=str(MODEL_CODE),
                artifacts=artifacts,
                signature=SIGNATURE,
                input_example=pd.DataFrame({"question": [INPUT_EXAMPLE]}),
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
