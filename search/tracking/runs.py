"""MLflow plumbing: the tracking store, the experiment, parent/child runs, failure marking.

Contract: every run this module opens ends FINISHED, FAILED (with the reason in the tag
``ragsweep.failure`` and the run description) or KILLED; none is left RUNNING by a failed or interrupted
search (:func:`close_children` sweeps trial runs that a killed worker could not close).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from mlflow.tracking import MlflowClient

from ragsweep.pipelines.data import Dataset
from ragsweep.pipelines.errors import BadInput
from ragsweep.search.tracking.checks import mask_uri
from ragsweep.search.tracking.tracker import PARENT_TAG, Tracker

TAG_KIND = "ragsweep.kind"  # "search" (parent) or "trial" (child)
TAG_TRIAL_ID = "ragsweep.trial_id"
TAG_STATUS = "ragsweep.status"  # trial outcome: completed | stopped_early (by the scheduler) | failed


# MLflow's HTTP retry defaults (7 retries, backoff factor 2) wait about four minutes for a server that went away;
# a search keeps them unless the user sets these variables (they reach trial workers too).
RETRY_ENV = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT")


class TrackingUnreachable(BadInput):
    """The MLflow tracking server cannot be reached before any work; the message names it."""


class TrackingLost(RuntimeError):
    """The MLflow tracking server stopped answering mid-search (after MLflow's own retries); the message names
    what was not logged."""


def check_tracking(uri: str, timeout_s: float = 5.0) -> None:
    """For an HTTP tracking URI, ``GET /health`` once; raise :class:`TrackingUnreachable` naming it if it fails."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    shown = mask_uri(uri)
    try:
        r = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as e:
        raise TrackingUnreachable(f"MLflow tracking server {shown} is unreachable ({type(e).__name__}: "
                                  f"{str(e).replace(uri, shown)}); start it (mlflow server --host ... --port ...) or "
                                  "fix mlflow.tracking_uri / --tracking-uri") from None
    if r.status_code != 200:
        raise TrackingUnreachable(f"MLflow tracking server {shown} answered HTTP {r.status_code} on "
                                  f"{mask_uri(url)}: is this an MLflow tracking server?")


@contextlib.contextmanager
def no_retries() -> Iterator[None]:
    """MLflow requests inside fail at once (one try, 10 s timeout): for closing up after the server went away."""
    saved = {k: os.environ.get(k) for k in RETRY_ENV}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def hide_credentials(uri: str) -> None:
    """MLflow prints "View run ... at: <tracking URI>/#/..." to stdout, password included; with a password in the URI,
    turn those lines off (here and, through the MLFLOW_* environment trials inherit, in every trial)."""
    if urlsplit(uri).password:
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"


def require_store(uri: str) -> None:
    """For a local store (sqlite file, file store folder) that does not exist yet, :class:`TrackingUnreachable`:
    commands that only read (ask, serve, promote, rollback, evaluate, resume) must not create an empty one."""
    path = local_store_path(uri)
    if path is not None and not path.exists():
        raise TrackingUnreachable(f"no MLflow store at {path} (tracking URI {mask_uri(uri)}): run a search first, or "
                                  "point --tracking-uri / mlflow.tracking_uri / storage_dir at the one it wrote")


def local_store_path(uri: str) -> Path | None:
    """The file or folder behind a sqlite or file-store URI (None for a server or database URI)."""
    if uri.startswith("sqlite:"):
        rest = uri.removeprefix("sqlite:")
        return Path(rest[3:] if rest.startswith("///") else rest.lstrip("/")) if rest not in ("", "//") else None
    if uri.startswith("file:"):
        return Path(urlsplit(uri).path)
    return Path(uri).expanduser() if "://" not in uri else None


def default_tracking_uri(storage_dir: Path) -> str:
    return f"sqlite:///{(storage_dir / 'mlflow.db').resolve()}"


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def ensure_experiment(uri: str, name: str, storage_dir: Path) -> str:
    """Return the experiment id, creating it if needed; local stores keep artifacts under storage_dir.

    An absolute artifact location matters: Ray Tune runs each trial in its own working directory.
    """
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = (storage_dir / "mlartifacts").resolve().as_uri() if is_local_store(uri) else None
    return str(client.create_experiment(name, artifact_location=location))


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"a.b": "value"}`` with JSON for lists, as MLflow params."""
    out: dict[str, str] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v if isinstance(v, str) else json.dumps(v)
    return out


def log_params(params: Mapping[str, str]) -> None:
    """Params on the active run (a trial's own process), in batches and cut to MLflow's limits."""
    tracker, run_id = Tracker.active()
    tracker.params(run_id, params)


def log_dataset_inputs(dataset: Dataset, corpus_path: Path, questions_path: Path, n_used: int | None = None) -> None:
    """Dataset lineage on the active run (see :meth:`Tracker.dataset_inputs`)."""
    tracker, run_id = Tracker.active()
    tracker.dataset_inputs(run_id, dataset, corpus_path, questions_path, n_used)


def git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def mark_failed(client: MlflowClient, run_id: str, reason: str, status: str = "FAILED") -> None:
    Tracker.of(client).fail(run_id, reason, status)


def close_children(client: MlflowClient, experiment_id: str, parent_run_id: str, status: str = "KILLED") -> int:
    """End any child run still RUNNING (its worker died or was stopped); return how many."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' and attributes.status = 'RUNNING'"
    )
    for r in runs:
        mark_failed(client, r.info.run_id, "trial did not finish (search stopped or worker died)", status)
    return len(runs)
