"""The registered champion: ``ask``, ``serve``, ``promote``, ``evaluate``, ``rollback`` (arguments beside handlers)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ragsweep.search.commands.common import (
    Command,
    add_config,
    add_model_args,
    load,
    model_location,
    port,
)

SLOW_ASK_S = 15.0  # above this, ask says where its time went (on stderr, so --json stays parseable)


def _print_timings(model: Any, load_s: float, total_s: float) -> None:
    parts = dict(getattr(model.unwrap_python_model(), "timings", {}))
    detail = ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.1f}s" for k, v in parts.items() if v >= 0.05)
    print(f"ragsweep ask: {total_s:.1f}s in all: loading the model {load_s:.1f}s ({detail})", file=sys.stderr)


def _check_port_free(host: str, port: int) -> None:
    """Bind ``host:port`` once (and let go) so a taken port is reported before the champion loads."""
    import socket

    from ragsweep.search.config import ConfigError

    try:
        with socket.socket() as s:
            s.bind((host, port))
    except OSError as e:
        raise ConfigError(
            f"--host {host} --port {port}: cannot listen there ({e.strerror}); choose another "
            "--port, or stop what is using it"
        ) from None


def _ask_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("question")
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="print the answer and sources as JSON")
    p.add_argument(
        "--timings",
        action="store_true",
        help=f"say where the time went (also said when slower than {SLOW_ASK_S:g}s), on stderr",
    )


def _cmd_ask(args: argparse.Namespace) -> int:
    import mlflow
    import pandas as pd

    from ragsweep.search.promotion.champion import load_champion
    from ragsweep.search.promotion.registry import PromotionError

    if not args.question.strip():
        from ragsweep.search.config import ConfigError

        raise ConfigError("the question is empty: ragsweep ask 'your question'")
    uri, name = model_location(args)
    t0 = time.perf_counter()
    try:
        model = load_champion(name, args.alias)
    except mlflow.exceptions.MlflowException as e:
        raise PromotionError(f"no model {name}@{args.alias} in {uri}: {e.message}") from None
    t1 = time.perf_counter()
    out = model.predict(pd.DataFrame({"question": [args.question]}))
    total = time.perf_counter() - t0
    if args.timings or total > SLOW_ASK_S:
        _print_timings(model, t1 - t0, total)
    answer, sources = out["answer"][0], json.loads(out["sources"][0])
    if args.json:
        print(json.dumps({"answer": answer, "sources": sources}, ensure_ascii=False))
        return 0
    print(answer)
    print("\nSources:")
    for i, s in enumerate(sources, start=1):
        snippet = " ".join(s["text"].split())[:160]
        print(f"  [{i}] {s['doc_id']} [{s['start']}:{s['end']}] score {s['score']}: {snippet}")
    return 0


def _serve_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=5001, help="port (default 5001)")


def _cmd_serve(args: argparse.Namespace) -> int:
    import subprocess

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from ragsweep.pipelines.base.secrets import SECRETS
    from ragsweep.search.promotion.registry import PromotionError

    _check_port_free(args.host, args.port)  # before anything loads
    uri, name = model_location(args)
    model = f"models:/{name}@{args.alias}"
    try:
        MlflowClient(uri).get_model_version_by_alias(name, args.alias)
    except MlflowException as e:
        raise PromotionError(f"no model {name}@{args.alias} in {uri}: {e.message}") from None
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        model,
        "--env-manager",
        "local",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        "1",
    ]
    print(f"ragsweep serve: {model} from {SECRETS.mask(uri)} on http://{args.host}:{args.port}/invocations", flush=True)
    # MLflow's own scoring server (/ping, /health, /version, /invocations) in this environment: the
    # champion's requirements are ragsweep's, already installed, so no environment is built or downloaded.
    # MLflow launches `uvicorn` by name: put this environment's scripts first on PATH (a venv need not be active).
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return subprocess.call(cmd, env={**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": path})


def _promote_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="the search's MLflow parent run id")
    add_model_args(p, alias=False)
    p.add_argument("--force", action="store_true", help="make it champion even if gates fail (recorded as forced)")


def _cmd_promote(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from ragsweep.search.promotion.registry import CHAMPION, promote_search

    uri, name = model_location(args)
    cfg = load(args)
    out = promote_search(MlflowClient(uri), cfg.promotion, cfg.objective.weights, args.run, name, force=args.force)
    for g in out.decision.gates:
        print(f"  {'pass' if g.passed else 'FAIL'}  {g.name}: {g.detail}")
    print(
        f"{name} v{out.version} -> @{out.alias}"
        + (f" (replaces v{out.previous})" if out.previous and out.alias == CHAMPION else "")
    )
    return 0 if out.alias == CHAMPION else 3


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    add_config(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--model", metavar="NAME[@ALIAS]", help="registered model (default: the config's mlflow.model_name @champion)"
    )
    which.add_argument(
        "--run",
        metavar="TRIAL_RUN_ID",
        help="instead of a model: the configuration a trial run answered with, rebuilt on the config's corpus",
    )
    p.add_argument(
        "--questions",
        type=Path,
        required=True,
        help="questions.jsonl (the dataset format; its doc ids refer to the model's corpus)",
    )
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the config's store)")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from ragsweep.search.promotion.evaluate import evaluate, registered_model, trial_configuration

    name, _, alias = (args.model or "").partition("@")
    args.model_name = name or None
    uri, model_name = model_location(args)
    cfg = load(args)
    client = MlflowClient(uri)
    target = (
        trial_configuration(client, args.run, cfg.dataset.corpus, cfg.index_cache)
        if args.run
        else registered_model(client, model_name, alias or "champion")
    )
    s = cfg.search
    result = evaluate(
        target, args.questions, cfg.objective.weights, cfg.mlflow.experiment, s.confidence, s.bootstrap_samples, s.seed
    )
    for line in result.lines():
        print(line)
    return 3 if result.dropped else 0


def _rollback_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p, alias=False)


def _cmd_rollback(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from ragsweep.search.promotion.registry import rollback

    uri, name = model_location(args)
    was, now = rollback(MlflowClient(uri), name)
    print(f"{name}: @champion moved from v{was} back to v{now}")
    return 0


COMMANDS = [
    Command(
        name="ask",
        help="answer a question with the registered champion",
        description="Load models:/<model-name>@champion and answer, printing the sources.",
        arguments=_ask_args,
        run=_cmd_ask,
    ),
    Command(
        name="serve",
        help="serve the champion over HTTP (MLflow's scoring server)",
        description=(
            "Serve models:/<model-name>@<alias> with `mlflow models serve` in this environment: POST /invocations "
            '{"dataframe_records": [{"question": ...}]}.'
        ),
        arguments=_serve_args,
        run=_cmd_serve,
    ),
    Command(
        name="promote",
        help="re-run the promotion gates for a finished search",
        description=(
            "Re-evaluate the promotion gates (the config's promotion section) for the model version a search "
            "registered, against the current champion; on a pass (or with --force) it becomes champion. The decision is"
            " recorded on the version and run."
        ),
        arguments=_promote_args,
        run=_cmd_promote,
    ),
    Command(
        name="evaluate",
        help="score a registered model on a question set; warn when it has dropped",
        description=(
            "Answer FILE with models:/NAME@ALIAS (default: the config's model @champion) or a trial's configuration, "
            "score with the deterministic metrics and 95% intervals, log an MLflow evaluation run, and compare with the"
            " objective the version was promoted on. Exit 3 when the new interval lies entirely below the promoted one."
        ),
        arguments=_evaluate_args,
        run=_cmd_evaluate,
    ),
    Command(
        name="rollback",
        help="point champion back at the version it replaced",
        description="Move alias champion back to the version the current champion replaced.",
        arguments=_rollback_args,
        run=_cmd_rollback,
    ),
]
