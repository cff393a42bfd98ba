"""The tracker: MLflow writes addressed by run id instead of MLflow's implicit active run, with MLflow's limits and
the secret mask applied. The driver, trials, confirmation, evaluation and question generation write through it;
model registry versions and aliases go through the promotion wing's registry module.

Contract: a :class:`Tracker` is bound to one tracking URI. :meth:`~Tracker.start` opens a run (RUNNING) and returns
its id; every other method takes the run id it writes to, so two runs can be written in any order from one
process and nothing depends on which run happens to be active. :meth:`~Tracker.end` closes a run FINISHED, FAILED
or KILLED; :meth:`~Tracker.fail` closes it with the reason in the tag ``ragsweep.failure`` and the run
description. Values follow MLflow's limits: params are sent in batches of 100 and cut to 6,000 characters,
non-finite metrics are skipped (MLflow stores NaN, but a NaN mean is "undefined" here, not a value).
``tests/contracts/test_tracker_contract.py`` runs this contract against a sqlite store and an ``mlflow server``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from ragsweep.pipelines.base.secrets import SECRETS

if TYPE_CHECKING:
    from ragsweep.pipelines.data import Dataset

TAG_FAILURE = "ragsweep.failure"
PARENT_TAG = "mlflow.parentRunId"
BATCH = 100  # MLflow's cap on params (and metrics per call, conservatively) in one log_batch
PARAM_CHARS = 6000


class Tracker:
    def __init__(self, uri: str, client: MlflowClient | None = None) -> None:
        self.uri = uri
        self.client = client or MlflowClient(uri)

    @classmethod
    def of(cls, client: MlflowClient) -> Tracker:
        return cls(client.tracking_uri, client)

    @classmethod
    def active(cls) -> tuple[Tracker, str]:
        """The tracker of this process's tracking URI and the id of its active run (inside a trial's run)."""
        import mlflow

        run = mlflow.active_run()
        if run is None:
            raise RuntimeError("no active MLflow run")
        return cls(mlflow.get_tracking_uri()), run.info.run_id

    def start(
        self, experiment_id: str, name: str, tags: Mapping[str, str] | None = None, parent_id: str | None = None
    ) -> str:
        """A new RUNNING run; with ``parent_id`` it is that run's child (MLflow's nesting tag)."""
        all_tags = {**(tags or {}), **({PARENT_TAG: parent_id} if parent_id else {})}
        return str(self.client.create_run(experiment_id, run_name=name, tags=all_tags).info.run_id)

    def reopen(self, run_id: str) -> None:
        """Mark a finished or failed run RUNNING again (a resumed search writes into its old run)."""
        self.client.update_run(run_id, status="RUNNING")

    def params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(k, SECRETS.mask(str(v))[:PARAM_CHARS]) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(run_id, params=items[i : i + BATCH])

    def metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and math.isfinite(float(v))
        ]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(run_id, metrics=items[i : i + BATCH])

    def tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        items = [RunTag(k, SECRETS.mask(str(v))[:5000]) for k, v in tags.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(run_id, tags=items[i : i + BATCH])

    def artifact(self, run_id: str, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), folder)

    def text(self, run_id: str, text: str, artifact_file: str) -> None:
        """``text`` as a file artifact, secrets masked (e.g. the config file as the user wrote it)."""
        self.client.log_text(run_id, SECRETS.mask(text), artifact_file)

    def artifacts(self, run_id: str, local_dir: Path, folder: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(local_dir), folder)

    def json(self, run_id: str, obj: Any, artifact_file: str) -> None:
        self.client.log_dict(run_id, SECRETS.deep(obj), artifact_file)

    def dataset_inputs(
        self, run_id: str, dataset: Dataset, corpus_path: Path, questions_path: Path, n_used: int | None = None
    ) -> None:
        """Dataset lineage: the questions (context ``evaluation``, digest over both files) and the corpus (context
        ``corpus``) as MLflow dataset inputs with their name, digest and source path."""
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]  # built at import

        name = dataset.name or questions_path.parent.name
        questions = MetaDataset(  # type: ignore[abstract]  # MLflow's own dataset for a path and digest
            LocalArtifactDatasetSource(str(questions_path)), name=name, digest=dataset.digest[:32]
        )
        corpus = MetaDataset(  # type: ignore[abstract]
            LocalArtifactDatasetSource(str(corpus_path)), name=f"{name}-corpus", digest=dataset.corpus_digest[:32]
        )
        used = {"questions_used": str(n_used)} if n_used is not None else {}
        q_tags = {"mlflow.data.context": "evaluation", "questions": str(len(dataset.questions)), **used}
        c_tags = {"mlflow.data.context": "corpus", "documents": str(len(dataset.corpus))}
        self.client.log_inputs(
            run_id,
            datasets=[
                DatasetInput(questions._to_mlflow_entity(), [InputTag(k, v) for k, v in q_tags.items()]),
                DatasetInput(corpus._to_mlflow_entity(), [InputTag(k, v) for k, v in c_tags.items()]),
            ],
        )

    def untag(self, run_id: str, key: str) -> None:
        """Remove tag ``key`` from ``run_id`` (a failure tag a resumed or reconciled run no longer has)."""
        self.client.delete_tag(run_id, key)

    def delete(self, run_id: str) -> None:
        """Delete ``run_id`` (the run of a trial a resumed search no longer knows)."""
        self.client.delete_run(run_id)

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def fail(self, run_id: str, reason: str, status: str = "FAILED") -> None:
        """Close ``run_id`` as ``status`` with ``reason`` where a user looks: a tag and the run's description."""
        self.tags(run_id, {TAG_FAILURE: reason[:5000], "mlflow.note.content": f"{status}: {reason}"[:5000]})
        self.end(run_id, status)


@dataclass(frozen=True)
class RunRef:
    """One run of a tracker, passed explicitly to the code that writes to it (the search's parent run)."""

    tracker: Tracker
    run_id: str

    def params(self, params: Mapping[str, Any]) -> None:
        self.tracker.params(self.run_id, params)

    def metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        self.tracker.metrics(self.run_id, metrics, step)

    def tags(self, tags: Mapping[str, Any]) -> None:
        self.tracker.tags(self.run_id, tags)

    def artifact(self, path: Path, folder: str | None = None) -> None:
        self.tracker.artifact(self.run_id, path, folder)

    def artifacts(self, local_dir: Path, folder: str | None = None) -> None:
        self.tracker.artifacts(self.run_id, local_dir, folder)

    def text(self, text: str, artifact_file: str) -> None:
        self.tracker.text(self.run_id, text, artifact_file)

    def json(self, obj: Any, artifact_file: str) -> None:
        self.tracker.json(self.run_id, obj, artifact_file)
