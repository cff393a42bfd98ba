"""The search's parent run: the tracking store opened and checked before anything else, a new parent run or the one
being resumed (reopened, counted in tag ragsweep.resumed), and what the search will do, said on the console."""

from __future__ import annotations

import mlflow

from ragsweep.pipelines.data import Dataset
from ragsweep.search.config import ExperimentConfig
from ragsweep.search.confirm import QuestionPlan
from ragsweep.search.searcher import n_trials
from ragsweep.search.serving.cluster import (
    check_cluster,
)
from ragsweep.search.tracking.outcomes import (
    say,
)
from ragsweep.search.tracking.resume import Resumable
from ragsweep.search.tracking.runs import (
    TAG_KIND,
    check_tracking,
    default_tracking_uri,
    hide_credentials,
    require_store,
)
from ragsweep.search.tracking.tracker import TAG_FAILURE, Tracker

TAG_RESUMED = "ragsweep.resumed"  # times a search run was resumed


def open_store(cfg: ExperimentConfig, resume: bool) -> str:
    """The tracking URI, checked (reachable, and reachable from other nodes when joining a cluster) before any run,
    server, trial or folder; then storage_dir is made and MLflow pointed at the store."""
    storage = cfg.storage_dir
    uri = cfg.mlflow.tracking_uri or default_tracking_uri(storage)
    check_cluster(cfg, uri)  # joining a cluster with a tracking store other nodes cannot reach: config error
    check_tracking(uri, wait_s=cfg.mlflow.wait_s)
    hide_credentials(uri)
    if resume:
        require_store(uri)  # nothing to resume: say so without creating an empty store
    storage.mkdir(parents=True, exist_ok=True)
    say(f"MLflow tracking store: {uri}")
    say(f"  view it with: mlflow ui --backend-store-uri {uri}")
    mlflow.set_tracking_uri(uri)
    return uri


def reopen_parent(tracker: Tracker, found: Resumable) -> str:
    """The parent run of the search being resumed, RUNNING again and counted (tag ``ragsweep.resumed``)."""
    pid = found.run_id
    tracker.reopen(pid)
    old_tags = tracker.client.get_run(pid).data.tags
    resumes = int(old_tags.get(TAG_RESUMED, "0")) + 1
    tracker.tags(pid, {TAG_RESUMED: str(resumes)})
    if TAG_FAILURE in old_tags:
        tracker.untag(pid, TAG_FAILURE)
    say(f"resuming search run {pid} (was {found.status}; resume #{resumes}) from {found.ray_dir}")
    return pid


def new_parent(tracker: Tracker, cfg: ExperimentConfig, dataset: Dataset, plan: QuestionPlan, exp_id: str) -> str:
    """A new parent run, and what the search will do (trials, questions, held-out confirmation)."""
    pid = tracker.start(exp_id, f"search-{dataset.name}", {TAG_KIND: "search"})
    n = n_trials(cfg)
    capped = (
        f" (num_samples {cfg.search.num_samples} capped: the space has {n} configurations)"
        if n < cfg.search.num_samples
        else ""
    )
    say(f"search run {pid}: {n} trials x {len(plan.search_ids)} questions of {dataset.name!r}{capped}")
    say(
        f"held-out confirmation: {len(plan.holdout_ids)} held-out questions for the best "
        f"{cfg.search.finalists} trials, the baseline and the champion; held out: {plan.source}"
        if plan.on
        else f"held-out confirmation: {plan.source}; the pick is judged on the search questions"
    )
    return pid
