"""The ``ragsweep`` command: search, ask, serve, evaluate, promote, rollback, validate, config-schema, judges calibrate.

Exit codes: 0 success; 1 the search failed (the reason is printed and on the MLflow parent run);
2 bad input (config, dataset, model file, unknown run or model) found before any work; 3 ``promote``: the gates
did not pass (the version stays challenger), ``evaluate``: the model dropped below the interval it was promoted
on; 130 interrupted.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

CONFIG_ENV = "RAGSWEEP_CONFIG"
TRACKING_ENV = "MLFLOW_TRACKING_URI"  # MLflow's own convention


def project_config() -> Path:
    """configs/default.yaml of the project the installed package comes from (a checkout, or the folder an editable
    install points at); never relative to the working directory."""
    import ragsweep.search

    return Path(ragsweep.search.__file__).resolve().parent.parent / "configs" / "default.yaml"


def default_config() -> tuple[Path, str]:
    """The config a command uses without --config, and where that choice came from."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser(), CONFIG_ENV
    return project_config(), "the project's default"


def _choices(key: str) -> list[str]:
    """The names of a registry (search/registries.py), so the CLI and the config never disagree."""
    from ragsweep.search import registries

    return list(
        {"sampler": registries.SAMPLERS, "scheduler": registries.SCHEDULERS, "selection": registries.SELECTION_RULES}[
            key
        ].names()
    )


# An OSError on a path with one of these is the user's path being wrong (exit 2), not the search failing.
USER_PATH_ERRNOS = {errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS}

IMPLICIT_MLFLOW_ENV = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"experiment YAML (default: ${CONFIG_ENV}, else configs/default.yaml of the ragsweep project)",
    )


def _add_model_args(p: argparse.ArgumentParser, alias: bool = True) -> None:
    _add_config(p)
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the config's store)")
    p.add_argument("--model-name", help="registered model name (default: the config's mlflow.model_name)")
    if alias:
        p.add_argument("--alias", default="champion", help="model alias to load (default: champion)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragsweep", description="Search RAG configurations; register the winner.")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "search",
        help="run a configuration search (same as python search/run.py)",
        description="Run a configuration search and register the best trial as champion.",
    )
    _add_config(s)
    s.add_argument("--num-samples", type=int, help="trials to run (search.num_samples)")
    s.add_argument("--max-concurrent-trials", type=int, help="trials at once (search.max_concurrent_trials)")
    s.add_argument("--questions-per-trial", type=int, help="questions each trial answers")
    s.add_argument("--seed", type=int, help="seed for the sampler and the question order")
    s.add_argument("--sampler", choices=_choices("sampler"), help="search.sampler")
    s.add_argument("--scheduler", choices=_choices("scheduler"), help="search.scheduler")
    s.add_argument(
        "--strategy",
        choices=["two_stage", "joint"],
        help="search.strategy: two_stage = retrieval "
        "screened for free first, LLM trials on its front; joint = every key sampled together",
    )
    s.add_argument(
        "--selection",
        choices=_choices("selection"),
        help="search.selection: how the winner is picked among the finalists",
    )
    s.add_argument("--finalists", type=int, help="best trials confirmed on held-out questions (search.finalists)")
    s.add_argument(
        "--holdout", type=float, help="fraction of questions held out for confirmation, 0 = off (dataset.holdout)"
    )
    s.add_argument("--max-llm-calls", type=int, help="stop after this many LLM requests (search.max_llm_calls)")
    s.add_argument("--time-budget-s", type=float, help="stop after this many seconds of trials")
    s.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more output: debug messages and Ray Tune's own progress (full results are always in the "
        "search's log file and in MLflow)",
    )
    s.add_argument(
        "--resume",
        metavar="EXPERIMENT",
        help="continue the newest unfinished search of this MLflow experiment (same config); "
        "finished trials are kept, unfinished ones restart",
    )
    s.add_argument(
        "--ray-address",
        help="join this Ray cluster ('auto' = the one this machine belongs to, "
        "host:port = its head) instead of starting Ray; default: RAY_ADDRESS",
    )
    s.add_argument(
        "--storage-path",
        help="Ray Tune results on shared storage (s3://..., gs://..., an NFS path); search.storage_path",
    )
    s.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite file in storage_dir)")
    s.add_argument("--experiment", help="MLflow experiment name")
    s.add_argument("--storage-dir", help="folder for Ray results, caches and the default MLflow store")

    a = sub.add_parser(
        "ask",
        help="answer a question with the registered champion",
        description="Load models:/<model-name>@champion and answer, printing the sources.",
    )
    a.add_argument("question")
    _add_model_args(a)
    a.add_argument("--json", action="store_true", help="print the answer and sources as JSON")
    a.add_argument(
        "--timings",
        action="store_true",
        help=f"say where the time went (also said when slower than {SLOW_ASK_S:g}s), on stderr",
    )

    sv = sub.add_parser(
        "serve",
        help="serve the champion over HTTP (MLflow's scoring server)",
        description="Serve models:/<model-name>@<alias> with `mlflow models serve` in this "
        'environment: POST /invocations {"dataframe_records": [{"question": ...}]}.',
    )
    _add_model_args(sv)
    sv.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    sv.add_argument("--port", type=_port, default=5001, help="port (default 5001)")

    p = sub.add_parser(
        "promote",
        help="re-run the promotion gates for a finished search",
        description="Re-evaluate the promotion gates (the config's promotion section) for the model "
        "version a search registered, against the current champion; on a pass (or with "
        "--force) it becomes champion. The decision is recorded on the version and run.",
    )
    p.add_argument("--run", required=True, help="the search's MLflow parent run id")
    _add_model_args(p, alias=False)
    p.add_argument("--force", action="store_true", help="make it champion even if gates fail (recorded as forced)")

    ev = sub.add_parser(
        "evaluate",
        help="score a registered model on a question set; warn when it has dropped",
        description="Answer FILE with models:/NAME@ALIAS (default: the config's model @champion) or a "
        "trial's configuration, "
        "score with the deterministic metrics and 95% intervals, log an MLflow evaluation "
        "run, and compare with the objective the version was promoted on. Exit 3 when the "
        "new interval lies entirely below the promoted one.",
    )
    _add_config(ev)
    which = ev.add_mutually_exclusive_group()
    which.add_argument(
        "--model", metavar="NAME[@ALIAS]", help="registered model (default: the config's mlflow.model_name @champion)"
    )
    which.add_argument(
        "--run",
        metavar="TRIAL_RUN_ID",
        help="instead of a model: the configuration a trial run answered with, rebuilt on the config's corpus",
    )
    ev.add_argument(
        "--questions",
        type=Path,
        required=True,
        help="questions.jsonl (the dataset format; its doc ids refer to the model's corpus)",
    )
    ev.add_argument("--tracking-uri", help="MLflow tracking URI (default: the config's store)")

    rb = sub.add_parser(
        "rollback",
        help="point champion back at the version it replaced",
        description="Move alias champion back to the version the current champion replaced.",
    )
    _add_model_args(rb, alias=False)

    ig = sub.add_parser(
        "ingest",
        help="a folder of documents -> a dataset folder with corpus.jsonl",
        description="Read DIR recursively (.txt, .md, .html, .pdf, and .jsonl in the corpus layout), "
        "extract clean text, drop duplicates, and write OUT/corpus.jsonl and "
        "OUT/manifest.json (files read, files skipped with the reason, characters). "
        "A file that cannot be read is skipped with a line saying why.",
    )
    ig.add_argument("dir", type=Path, help="the folder to read")
    ig.add_argument("--out", type=Path, required=True, help="the dataset folder to write (new or empty)")
    ig.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")

    gq = sub.add_parser(
        "generate-questions",
        help="synthetic questions with exact answer spans from a corpus",
        description="Span first: pick an answer span (a number, date or name) in a passage, ask the "
        "config's generator server for a question that the span answers, and keep the "
        "span's offsets, so answer_spans are exact by construction. Filters (counted in "
        "the report): a malformed reply, an answer guessable from the question, "
        "near-duplicates, and with --check-answerable a model check that the passage "
        "answers it. Kinds: factoid, multi_sentence, unanswerable. Seeded; run the same "
        "command again to resume. The set is logged to MLflow as an evaluation dataset.",
    )
    _add_config(gq)
    gq.add_argument("--corpus", type=Path, required=True, help="corpus.jsonl (e.g. written by ragsweep ingest)")
    gq.add_argument("--out", type=Path, required=True, help="questions.jsonl to write (resumed if it exists)")
    gq.add_argument("--n", type=_number(int, 1), default=200, help="questions to generate (default 200)")
    gq.add_argument("--seed", type=int, default=0, help="seed of the candidate spans and the model (default 0)")
    gq.add_argument(
        "--kinds",
        default="factoid=0.6,multi_sentence=0.2,unanswerable=0.2",
        help="kinds and their weights (default factoid=0.6,multi_sentence=0.2,unanswerable=0.2)",
    )
    gq.add_argument(
        "--max-overlap",
        type=_number(float, 0, 1),
        default=0.5,
        help="drop a question containing more than this fraction of its answer's words, 0 to 1 (default 0.5)",
    )
    gq.add_argument(
        "--check-answerable",
        action="store_true",
        help="ask the model to answer each question from "
        "its passage and drop those it gets wrong (for a capable model; off by default on CPU)",
    )
    gq.add_argument("--overwrite", action="store_true", help="start again instead of resuming OUT")
    gq.add_argument("--tracking-uri", help="MLflow tracking URI (default: the config's store); 'none' = no logging")

    rv = sub.add_parser("review", help="export a question set for a person to review, and read the review back")
    rsub = rv.add_subparsers(dest="review_command", required=True)
    rx = rsub.add_parser("export", help="write the set as CSV (to edit) or HTML (to read)")
    rx.add_argument("--questions", type=Path, required=True)
    rx.add_argument("--corpus", type=Path, required=True)
    rx.add_argument("--out", type=Path, required=True, help="review.csv or review.html")
    ri = rsub.add_parser("import", help="apply a reviewed CSV (decision: accept, reject, edit) to the set")
    ri.add_argument("--questions", type=Path, required=True)
    ri.add_argument("--corpus", type=Path, required=True)
    ri.add_argument("--reviewed", type=Path, required=True, help="the edited review.csv")
    ri.add_argument("--out", type=Path, required=True, help="the reviewed questions.jsonl to write")

    v = sub.add_parser(
        "validate",
        help="check a config and its dataset without running anything",
        description="Validate the experiment YAML and its dataset; print a summary.",
    )
    _add_config(v)

    j = sub.add_parser(
        "judges",
        help="work with the LLM judges (judges calibrate)",
        description="Work with the LLM judges of the config's judges section.",
    )
    jsub = j.add_subparsers(dest="judges_command", required=True)
    cal = jsub.add_parser(
        "calibrate",
        help="measure how well the judges agree with known-good and known-bad answers",
        description="Score gold answers and deliberately wrong ones (another question's answer or passage), and "
        "optionally human-labelled answers, with every configured judge; print and log to MLflow per "
        "judge: accuracy, Spearman, self-consistency over repeats, calls and tokens per answer.",
    )
    _add_config(cal)
    cal.add_argument(
        "--dataset", type=Path, help="folder with corpus.jsonl and questions.jsonl (default: the config's dataset)"
    )
    cal.add_argument(
        "--labels",
        type=Path,
        help='JSON lines {"id": question id, "answer": "...", "label": 0..1[, "contexts": [...]]}',
    )
    cal.add_argument("--questions", type=_number(int, 1), default=16, help="questions to sample (default 16)")
    cal.add_argument("--repeats", type=_number(int, 1), default=2, help="times each verdict is asked (default 2)")
    cal.add_argument("--seed", type=int, default=0, help="seed of the question sample")
    cal.add_argument("--tracking-uri", help="MLflow tracking URI (default: the config's store)")

    it = sub.add_parser(
        "init",
        help="write a starter config and the bundled samples into a new folder",
        description="Write DIR/config.yaml (the default search, every key documented in "
        "docs/config.md), DIR/data/xquad_en (the sample corpus and questions it searches) "
        "and DIR/data/mixed_docs (documents to try `ragsweep ingest` on). DIR must be new "
        "or empty: nothing is overwritten.",
    )
    it.add_argument("dir", type=Path, help="the folder to write (new or empty)")

    c = sub.add_parser(
        "config-schema",
        help="print the JSON Schema of the experiment YAML",
        description="Print (or write) the JSON Schema of the experiment config, for editors.",
    )
    c.add_argument("--output", type=Path, help="write to this file instead of stdout")
    return parser


def _number(kind: type[int] | type[float], low: float | None = None, high: float | None = None) -> Any:
    """argparse type: a ``kind`` number in ``[low, high]`` (either end open when None); argparse names the flag
    in its error (exit 2)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
        if value != value or (low is not None and value < low) or (high is not None and value > high):
            span = (
                f"from {low:g} to {high:g}"
                if low is not None and high is not None
                else f"at least {low:g}"
                if low is not None
                else f"at most {high:g}"
            )
            raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {span}")
        return value

    parse.__name__ = kind.__name__  # argparse says "invalid int value" on a ValueError it sees
    return parse


def _port(text: str) -> int:
    """argparse type: a TCP port number 1..65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (1-65535)")
    return port


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


def _load(args: argparse.Namespace, overrides: dict[str, object] | None = None) -> Any:
    """The command's config: --config, else the default (:func:`default_config`), which must exist."""
    from ragsweep.search.config import ConfigError, load_config

    source = getattr(args, "config_source", None)
    if source and not Path(args.config).is_file():
        raise ConfigError(
            f"no --config given, and the default from {source} ({args.config}) is not a file: pass "
            f"--config FILE or set {CONFIG_ENV}"
        )
    return load_config(args.config, overrides)


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    from ragsweep.search.config import OVERRIDES

    return {k: getattr(args, k) for k in OVERRIDES if getattr(args, k, None) is not None}


def _cmd_search(args: argparse.Namespace) -> int:
    from ragsweep.pipelines.secrets import SECRETS
    from ragsweep.search.console import logger
    from ragsweep.search.driver import run_search

    overrides = _overrides(args)
    if args.resume:
        overrides["experiment"] = args.resume
    log = logger("search")
    if getattr(args, "config_source", None):
        log.info(f"config: {args.config} (from {args.config_source}; --config chooses another)")
    if args.tracking_uri is None and os.environ.get(TRACKING_ENV):
        from ragsweep.search.schema import check_tracking_uri

        _check_flag(TRACKING_ENV, os.environ[TRACKING_ENV], check_tracking_uri)  # blamed on the variable
        overrides["tracking_uri"] = os.environ[TRACKING_ENV]
        log.info(f"MLflow tracking URI from {TRACKING_ENV} (--tracking-uri overrides it)")
    cfg = _load(args, overrides)
    out = run_search(cfg, args.config, resume=bool(args.resume), verbose=args.verbose)
    model = f"{out.model_name}@{out.alias} (v{out.model_version})" if out.model_version else None
    print(
        json.dumps(
            {
                "parent_run_id": out.parent_run_id,
                "best_objective": round(out.best_objective, 4) if out.model_version else None,
                "best_params": out.best_params,
                "model": model,
                "tracking_uri": SECRETS.mask(out.tracking_uri),
            },
            indent=2,
        )
    )
    return 0


def _cmd_ask(args: argparse.Namespace) -> int:
    import mlflow
    import pandas as pd

    from ragsweep.search.promotion.champion import load_champion
    from ragsweep.search.promotion.registry import PromotionError

    if not args.question.strip():
        from ragsweep.search.config import ConfigError

        raise ConfigError("the question is empty: ragsweep ask 'your question'")
    uri, name = _model_location(args)
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


SLOW_ASK_S = 15.0  # above this, ask says where its time went (on stderr, so --json stays parseable)


def _print_timings(model: Any, load_s: float, total_s: float) -> None:
    parts = dict(getattr(model.unwrap_python_model(), "timings", {}))
    detail = ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.1f}s" for k, v in parts.items() if v >= 0.05)
    print(f"ragsweep ask: {total_s:.1f}s in all: loading the model {load_s:.1f}s ({detail})", file=sys.stderr)


def _check_flag(flag: str, value: str | None, check: Any) -> None:
    """A flag's value through the config's own check; a bad one is blamed on the flag."""
    from ragsweep.search.config import ConfigError

    if value is not None:
        try:
            check(value)
        except ValueError as e:
            raise ConfigError(f"{flag}: {e}") from None


def _model_location(args: argparse.Namespace) -> tuple[str, str]:
    """Tracking URI and model name from the flags, else the config; the URI is set and checked."""
    import mlflow

    from ragsweep.search.promotion.champion import INDEX_CACHE_ENV
    from ragsweep.search.schema import check_model_name, check_tracking_uri
    from ragsweep.search.tracking.runs import check_tracking, default_tracking_uri, hide_credentials, require_store

    uri, name = args.tracking_uri or os.environ.get(TRACKING_ENV) or None, args.model_name
    _check_flag("--tracking-uri" if args.tracking_uri else TRACKING_ENV, uri, check_tracking_uri)
    _check_flag("--model-name", name, check_model_name)
    if uri is None or name is None:
        cfg = _load(args)
        uri = uri or cfg.mlflow.tracking_uri or default_tracking_uri(cfg.storage_dir)
        name = name or cfg.mlflow.model_name
        os.environ.setdefault(INDEX_CACHE_ENV, str(cfg.index_cache))
    check_tracking(uri)
    require_store(uri)  # a read-only command never creates an empty store
    hide_credentials(uri)
    mlflow.set_tracking_uri(uri)
    return uri, name


def _cmd_serve(args: argparse.Namespace) -> int:
    import subprocess

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from ragsweep.pipelines.secrets import SECRETS
    from ragsweep.search.promotion.registry import PromotionError

    _check_port_free(args.host, args.port)  # before anything loads
    uri, name = _model_location(args)
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


def _cmd_promote(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from ragsweep.search.promotion.registry import CHAMPION, promote_search

    uri, name = _model_location(args)
    cfg = _load(args)
    out = promote_search(MlflowClient(uri), cfg.promotion, cfg.objective.weights, args.run, name, force=args.force)
    for g in out.decision.gates:
        print(f"  {'pass' if g.passed else 'FAIL'}  {g.name}: {g.detail}")
    print(
        f"{name} v{out.version} -> @{out.alias}"
        + (f" (replaces v{out.previous})" if out.previous and out.alias == CHAMPION else "")
    )
    return 0 if out.alias == CHAMPION else 3


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from ragsweep.search.promotion.evaluate import evaluate, registered_model, trial_configuration

    name, _, alias = (args.model or "").partition("@")
    args.model_name = name or None
    uri, model_name = _model_location(args)
    cfg = _load(args)
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


def _cmd_rollback(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from ragsweep.search.promotion.registry import rollback

    uri, name = _model_location(args)
    was, now = rollback(MlflowClient(uri), name)
    print(f"{name}: @champion moved from v{was} back to v{now}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from ragsweep.search.driver import prepare

    cfg = _load(args)
    from ragsweep.search.searcher import n_trials

    ds, plan = prepare(cfg)
    held = (
        f"{len(plan.holdout_ids)} held-out for confirmation ({plan.source})" if plan.on else "no held-out confirmation"
    )
    print(
        f"{args.config}: OK — {len(ds.corpus)} documents, {len(ds.questions)} questions ({len(plan.search_ids)} "
        f"per trial, {held}), {n_trials(cfg)} trials, objective {cfg.objective.weights}, selection "
        f"{cfg.search.selection} of {cfg.search.finalists} finalists"
    )
    from ragsweep.search.space import describe_space

    print(f"space: {describe_space(cfg.space)}")
    if cfg.search.strategy == "two_stage":
        from ragsweep.search.screen.front import index_count, screen_points
        from ragsweep.search.searcher import baseline

        s = cfg.search
        points = screen_points(cfg.space, baseline(cfg), s.seed, s.screen_configs, s.screen_indexes)
        print(
            f"retrieval screen: {len(points)} configurations on {index_count(points)} index(es) x "
            f"{len(plan.screen_ids)} search questions, no LLM call; the LLM trials try at most "
            f"{s.max_candidates} of its front"
        )
    from ragsweep.search.driver import check_gpu_fit

    for line in check_gpu_fit(cfg):  # prepare() raised already if a server cannot fit; these are the numbers
        print(line)
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from ragsweep.pipelines.data import DatasetError
    from ragsweep.pipelines.files import check_apart
    from ragsweep.pipelines.ingest import MANIFEST, check_out, ingest_folder, write_dataset
    from ragsweep.pipelines.progress import Progress

    check_apart(args.out, "--out", {"folder": args.dir}, DatasetError)
    check_out(args.out, args.overwrite)
    files = sum(1 for p in args.dir.rglob("*") if p.is_file()) if args.dir.is_dir() else 0
    with Progress("ingest", files, unit="files", every_s=10) as bar:
        ingested = ingest_folder(args.dir, progress=lambda _i, _path: bar.update(1))
    for s in ingested.skipped:
        print(f"skipped {s.path}: {s.reason}")
    out = write_dataset(ingested, args.out, overwrite=args.overwrite)
    m = ingested.manifest()
    print(
        f"{out}: {m['documents']} documents from {m['files_read']} files, {m['characters']:,} characters; "
        f"{m['skipped_files']} skipped (reasons in {out / MANIFEST})"
    )
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from ragsweep.pipelines.data import DatasetError
    from ragsweep.pipelines.files import check_apart
    from ragsweep.search.questions.generate import generate, parse_kinds, report_table
    from ragsweep.search.tracking.runs import default_tracking_uri

    check_apart(args.out, "--out", {"--corpus": args.corpus, "--config": args.config}, DatasetError)
    for suffix in (".state.json", ".report.json"):  # generate's own files beside --out
        check_apart(args.out.with_name(args.out.name + suffix), "--out", {"--corpus": args.corpus}, DatasetError)
    cfg = _load(args)
    kinds = parse_kinds(args.kinds)
    uri = args.tracking_uri or cfg.mlflow.tracking_uri or default_tracking_uri(cfg.storage_dir)
    report = generate(
        args.corpus,
        args.out,
        args.n,
        cfg.llm.generator,
        seed=args.seed,
        kinds=kinds,
        max_overlap=args.max_overlap,
        check_answerable=args.check_answerable,
        overwrite=args.overwrite,
        log_dir=cfg.storage_dir / "logs" / "generate-questions",
        tracking_uri=None if uri == "none" else uri,
        experiment=f"{cfg.mlflow.experiment}-testsets",
        storage_dir=cfg.storage_dir,
    )
    print(report_table(report))
    where = f"; MLflow run {report['mlflow_run']}" if report.get("mlflow_run") else ""
    print(f"{args.out}: {report['questions']} questions (report: {args.out}.report.json{where})")
    return 0


def _cmd_review(args: argparse.Namespace) -> int:
    from ragsweep.pipelines.data import DatasetError
    from ragsweep.pipelines.files import check_apart
    from ragsweep.search.questions.review import apply_review, export

    inputs = {"--questions": args.questions, "--corpus": args.corpus, "--reviewed": getattr(args, "reviewed", None)}
    check_apart(args.out, "--out", inputs, DatasetError)
    if args.review_command == "export":
        n = export(args.questions, args.corpus, args.out)
        print(
            f"{args.out}: {n} questions to review"
            + (" (fill in decision: accept, reject or edit)" if args.out.suffix.lower() == ".csv" else "")
        )
        return 0
    counts = apply_review(args.questions, args.corpus, args.reviewed, args.out)
    print(
        f"{args.out}: {sum(v for k, v in counts.items() if k != 'reject')} questions kept; "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    return 0


def _cmd_judges(args: argparse.Namespace) -> int:
    from ragsweep.search.calibration import run_calibration

    cfg = _load(args)
    _, table = run_calibration(
        cfg,
        dataset_dir=args.dataset,
        labels=args.labels,
        questions=args.questions,
        repeats=args.repeats,
        seed=args.seed,
        tracking_uri=args.tracking_uri,
    )
    print(table)
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    import shutil

    from ragsweep.search.config import ConfigError

    target: Path = args.dir
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(
            f"{target}: exists and is not an empty folder; ragsweep init writes only into a new or "
            "empty folder: choose another"
        )
    source = project_config()
    data = source.parent.parent / "data"
    text = source.read_text(encoding="utf-8").replace("../data/", "data/")  # the samples sit beside config.yaml
    text = text.replace(
        "Relative paths are relative to this file.",
        "Relative paths are relative to this file (written by `ragsweep init`).",
    )
    made = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in ("xquad_en", "mixed_docs"):
            shutil.copytree(data / name, target / "data" / name)
        (target / "config.yaml").write_text(text, encoding="utf-8")
    except BaseException:
        shutil.rmtree(target / "data", ignore_errors=True)  # ours: the folder was checked empty
        (target / "config.yaml").unlink(missing_ok=True)
        if made:
            shutil.rmtree(target, ignore_errors=True)
        raise
    print(
        f"{target}: config.yaml, data/xquad_en ({sum(1 for _ in (target / 'data' / 'xquad_en').iterdir())} files) "
        f"and data/mixed_docs\nnext: ragsweep validate --config {target / 'config.yaml'}\n"
        f"      ragsweep search --config {target / 'config.yaml'}"
    )
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from ragsweep.search.config import config_json_schema

    text = json.dumps(config_json_schema(), indent=2)
    if args.output:
        from ragsweep.pipelines.files import write_text_atomic

        write_text_atomic(args.output, text + "\n")
    else:
        print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # run URLs are in the summary instead
    # Ray folds identical worker lines into "[repeated 2x across cluster]": two trials building two indexes printed
    # one line. Read when ray is first imported, so set before any import of it.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # The config names the experiment and every run is addressed by id; an inherited "current" experiment or run
    # (mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID to child processes) would only send writes astray.
    for name in IMPLICIT_MLFLOW_ENV:
        os.environ.pop(name, None)
    args = _parser().parse_args(argv)
    if hasattr(args, "config") and args.config is None:
        args.config, args.config_source = default_config()
    from ragsweep.pipelines.errors import BadInput
    from ragsweep.pipelines.secrets import SECRETS
    from ragsweep.search.console import setup
    from ragsweep.search.serving.engines import ServerError

    setup(getattr(args, "verbose", 0))
    handlers = {
        "search": _cmd_search,
        "ask": _cmd_ask,
        "validate": _cmd_validate,
        "ingest": _cmd_ingest,
        "generate-questions": _cmd_generate,
        "review": _cmd_review,
        "config-schema": _cmd_schema,
        "judges": _cmd_judges,
        "serve": _cmd_serve,
        "promote": _cmd_promote,
        "rollback": _cmd_rollback,
        "evaluate": _cmd_evaluate,
        "init": _cmd_init,
    }

    def say(message: str) -> None:
        print(f"ragsweep {args.command}: {SECRETS.mask(message)}", file=sys.stderr)

    try:
        return handlers[args.command](args)
    except BadInput as e:  # config, dataset, model file, endpoint, store, run or model name: before any work
        say(str(e))
        return 2
    except OSError as e:
        if e.filename is None or e.errno not in USER_PATH_ERRNOS:
            say(f"failed: {type(e).__name__}: {e}")
            return 1
        # a path given by the user (a folder for a file, a file for a folder, no permission): bad input
        say(f"cannot use {e.filename}: {e.strerror or type(e).__name__}")
        return 2
    except ServerError as e:
        say(str(e))
        return 1
    except KeyboardInterrupt:
        say("interrupted; servers stopped and runs closed")
        return 130
    except Exception as e:  # noqa: BLE001 - any failure of a search exits 1 with its reason (also on the parent run)
        say(f"failed: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
