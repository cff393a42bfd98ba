"""MLflow plumbing: the tracking store, the experiment, parent/child runs, failure marking.

Contract: every run this module opens ends FINISHED, FAILED (with the reason in the tag
``ragsweep.failure`` and the run description) or KILLED; none is left RUNNING by a failed or interrupted
search (:func:`close_children` sweeps trial runs that a killed worker could not close).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ragsweep.pipelines.base.errors import BadInput
from ragsweep.pipelines.data import Dataset
from ragsweep.search.schema import mask_uri
from ragsweep.search.tracking.tracker import PARENT_TAG, Tracker

logger = logging.getLogger("ragsweep.tracking")

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


def check_tracking(uri: str, timeout_s: float = 5.0, wait_s: float = 0.0) -> None:
    """For an HTTP tracking URI, ``GET /health``; raise :class:`TrackingUnreachable` naming it if it fails.

    With ``wait_s`` > 0, a server that refuses connections or answers 5xx (one still starting, as on a first
    ``kubectl apply``) is asked again every 2 s until ``wait_s`` has passed, with a progress line every 10 s."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    shown = mask_uri(uri)
    deadline = time.monotonic() + wait_s
    next_note = time.monotonic() + 10
    while True:
        try:
            r = httpx.get(url, timeout=timeout_s)
            problem = f"HTTP {r.status_code}" if r.status_code >= 500 else None
        except httpx.HTTPError as e:
            r, problem = None, f"{type(e).__name__}: {str(e).replace(uri, shown)}"
        if problem is None or time.monotonic() >= deadline:
            break
        if time.monotonic() >= next_note:
            logger.info(
                "waiting for MLflow tracking server %s (%s), %.0f s left", shown, problem, deadline - time.monotonic()
            )
            next_note += 10
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
    waited = f" after waiting {wait_s:g} s (mlflow.wait_s)" if wait_s > 0 else ""
    if r is None:
        raise TrackingUnreachable(
            f"MLflow tracking server {shown} is unreachable{waited} ({problem}); start it "
            "(mlflow server --host ... --port ...) or fix mlflow.tracking_uri / --tracking-uri"
        )
    if r.status_code != 200:
        raise TrackingUnreachable(
            f"MLflow tracking server {shown} answered HTTP {r.status_code} on "
            f"{mask_uri(url)}{waited}: is this an MLflow tracking server?"
        )
    check_credentials(uri, timeout_s)


def check_credentials(uri: str, timeout_s: float = 5.0) -> None:
    """One read through MLflow's REST API with the credentials MLflow's client would send (its
    ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD`` or ``_TOKEN``): a server with authentication (``mlflow server
    --app-name basic-auth``, or a proxy) that refuses them fails here, naming the variables, not in a trial."""
    env = os.environ
    auth = (
        (env["MLFLOW_TRACKING_USERNAME"], env.get("MLFLOW_TRACKING_PASSWORD", ""))
        if env.get("MLFLOW_TRACKING_USERNAME")
        else None
    )
    headers = {"Authorization": f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"} if env.get("MLFLOW_TRACKING_TOKEN") else {}
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search"
    try:
        r = httpx.get(url, params={"max_results": 1}, auth=auth, headers=headers, timeout=timeout_s)
    except httpx.HTTPError:
        return  # /health answered: a transient failure here is MLflow's retries' business
    if r.status_code in (401, 403):
        sent = (
            "the credentials in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD"
            if auth
            else "the token in MLFLOW_TRACKING_TOKEN"
            if headers
            else "no credentials"
        )
        raise TrackingUnreachable(
            f"MLflow tracking server {mask_uri(uri)} refused {sent} (HTTP {r.status_code}): "
            "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
            "MLFLOW_TRACKING_TOKEN) to an account of that server"
        )


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
        raise TrackingUnreachable(
            f"no MLflow store at {path} (tracking URI {mask_uri(uri)}): run a search first, or "
            "point --tracking-uri / mlflow.tracking_uri / storage_dir at the one it wrote"
        )


def local_store_path(uri: str) -> Path | None:
    """The file or folder behind a sqlite or file-store URI (None for a server or database URI)."""
    if uri.startswith("sqlite:"):
        rest = uri.removeprefix("sqlite:")
        return Path(rest[3:] if rest.startswith("///") else rest.lstrip("/")) if rest not in ("", "//") else None
    if uri.startswith("file:"):
        return Path(urlsplit(uri).path)
    return Path(uri).expanduser() if "://" not in uri else None


KIND_NAMES = {
    "search": "search run (a search's parent run)",
    "trial": "trial run",
    "evaluation": "evaluation run",
    "calibration": "judge calibration run",
    "testset": "question-generation run",
    "champion_holdout": "champion held-out run",
}


def run_of_kind(client: MlflowClient, run_id: str, want: str, flag: str, error: type[Exception]) -> Run:
    """The run ``run_id`` if it is a ragsweep run of kind ``want`` (tag ``ragsweep.kind``), else ``error`` naming
    ``flag``, what the run really is and, for a search/trial mix-up, the run id that was meant."""
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        raise error(f"{flag} {run_id}: no such run in this tracking store ({e.message})") from None
    tags = run.data.tags
    kind = tags.get(TAG_KIND)
    if kind == want:
        return run
    what = (
        KIND_NAMES.get(kind or "", f"run of kind {kind!r}")
        if kind
        else f"run ragsweep did not record (no {TAG_KIND} tag)"
    )
    hint = ""
    if kind == "trial" and want == "search" and tags.get(PARENT_TAG):
        hint = f"; its search run is {tags[PARENT_TAG]}"
    elif kind == "search" and want == "trial" and tags.get("best_trial_run_id"):
        hint = f"; its best trial run is {tags['best_trial_run_id']}"
    raise error(f"{flag} {run_id}: is a {what}, not a {KIND_NAMES[want]}{hint}")


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
