"""Find the search to resume after its driver died, and check it is the same search.

Contract: :func:`find_resumable` returns the newest unfinished search run (parent run not FINISHED) of the
config's MLflow experiment whose Ray Tune state can be restored, or raises :class:`ResumeError` naming what is
missing (experiment, unfinished run, Tune state) or which config keys differ from the ones the search started
with. Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from ragsweep.pipelines.base.errors import BadInput
from ragsweep.search.config import ExperimentConfig
from ragsweep.search.serving.cluster import tune_root
from ragsweep.search.tracking.runs import TAG_KIND, flatten

TAG_RAY_DIR = "ragsweep.ray_dir"  # Ray Tune experiment folder of a search (parent run tag)
# Keys that may differ on resume: where things are, not what is searched.
_IGNORED = ("mlflow.tracking_uri", "search.ray_address", "search.storage_path", "search.max_failures", "storage_dir")


class ResumeError(BadInput):
    """The search cannot be resumed; the message says why."""


@dataclass(frozen=True)
class Resumable:
    run_id: str
    ray_dir: str  # a folder or a URI (search.storage_path)
    status: str


def ray_dir_for(root: str, run_id: str) -> str:
    """The Ray Tune experiment folder of a search under ``root`` (see :func:`search.cluster.tune_root`)."""
    return f"{root}/search-{run_id[:12]}"


def find_resumable(client: MlflowClient, cfg: ExperimentConfig, uri: str) -> Resumable:
    from ray import tune

    name = cfg.mlflow.experiment
    exp = client.get_experiment_by_name(name)
    if exp is None:
        raise ResumeError(f"--resume {name}: no MLflow experiment of that name in {uri}")
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{TAG_KIND}` = 'search'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    unfinished = [r for r in runs if r.info.status != "FINISHED"]
    if not unfinished:
        latest = f"; the latest search run {runs[0].info.run_id} finished" if runs else ""
        raise ResumeError(f"--resume {name}: no unfinished search in this experiment{latest}")
    run = unfinished[0]
    ray_dir = run.data.tags.get(TAG_RAY_DIR) or ray_dir_for(tune_root(cfg, cfg.storage_dir), run.info.run_id)
    if not tune.Tuner.can_restore(ray_dir):
        raise ResumeError(
            f"--resume {name}: search run {run.info.run_id} has no Ray Tune state at {ray_dir} "
            "(it may have died before its first trial started); start a new search instead"
        )
    changed = [
        k
        for k, v in flatten(cfg.model_dump(mode="json")).items()
        if k in run.data.params and not k.startswith(_IGNORED) and run.data.params[k] != str(v)[:6000]
    ]
    if changed:
        shown = ", ".join(
            f"{k} ({run.data.params[k]} -> {flatten(cfg.model_dump(mode='json'))[k]})" for k in changed[:5]
        )
        raise ResumeError(
            f"--resume {name}: the config differs from the one search run {run.info.run_id} "
            f"started with: {shown}; resume with the same config"
        )
    return Resumable(run.info.run_id, ray_dir, run.info.status)
