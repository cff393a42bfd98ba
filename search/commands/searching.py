"""``ragsweep search``, ``validate``, ``init`` and ``config-schema``: each command's arguments beside its handler."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ragsweep.search.commands.common import (
    TRACKING_ENV,
    Command,
    add_config,
    check_flag,
    choices,
    flag_overrides,
    load,
    project_config,
)


def _search_args(p: argparse.ArgumentParser) -> None:
    add_config(p)
    p.add_argument("--num-samples", type=int, help="trials to run (search.num_samples)")
    p.add_argument("--max-concurrent-trials", type=int, help="trials at once (search.max_concurrent_trials)")
    p.add_argument("--questions-per-trial", type=int, help="questions each trial answers")
    p.add_argument("--seed", type=int, help="seed for the sampler and the question order")
    p.add_argument("--sampler", choices=choices("sampler"), help="search.sampler")
    p.add_argument("--scheduler", choices=choices("scheduler"), help="search.scheduler")
    p.add_argument(
        "--strategy",
        choices=["two_stage", "joint"],
        help="search.strategy: two_stage = retrieval "
        "screened for free first, LLM trials on its front; joint = every key sampled together",
    )
    p.add_argument(
        "--selection",
        choices=choices("selection"),
        help="search.selection: how the winner is picked among the finalists",
    )
    p.add_argument("--finalists", type=int, help="best trials confirmed on held-out questions (search.finalists)")
    p.add_argument(
        "--holdout", type=float, help="fraction of questions held out for confirmation, 0 = off (dataset.holdout)"
    )
    p.add_argument("--max-llm-calls", type=int, help="stop after this many LLM requests (search.max_llm_calls)")
    p.add_argument("--time-budget-s", type=float, help="stop after this many seconds of trials")
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more output: debug messages and Ray Tune's own progress (full results are always in the "
        "search's log file and in MLflow)",
    )
    p.add_argument(
        "--resume",
        metavar="EXPERIMENT",
        help="continue the newest unfinished search of this MLflow experiment (same config); "
        "finished trials are kept, unfinished ones restart",
    )
    p.add_argument(
        "--ray-address",
        help="join this Ray cluster ('auto' = the one this machine belongs to, "
        "host:port = its head) instead of starting Ray; default: RAY_ADDRESS",
    )
    p.add_argument(
        "--storage-path",
        help="Ray Tune results on shared storage (s3://..., gs://..., an NFS path); search.storage_path",
    )
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite file in storage_dir)")
    p.add_argument("--experiment", help="MLflow experiment name")
    p.add_argument("--storage-dir", help="folder for Ray results, caches and the default MLflow store")


def _cmd_search(args: argparse.Namespace) -> int:
    from ragsweep.pipelines.base.secrets import SECRETS
    from ragsweep.search.console import logger
    from ragsweep.search.driver import run_search

    overrides = flag_overrides(args)
    if args.resume:
        overrides["experiment"] = args.resume
    log = logger("search")
    if getattr(args, "config_source", None):
        log.info(f"config: {args.config} (from {args.config_source}; --config chooses another)")
    if args.tracking_uri is None and os.environ.get(TRACKING_ENV):
        from ragsweep.search.schema import check_tracking_uri

        check_flag(TRACKING_ENV, os.environ[TRACKING_ENV], check_tracking_uri)  # blamed on the variable
        overrides["tracking_uri"] = os.environ[TRACKING_ENV]
        log.info(f"MLflow tracking URI from {TRACKING_ENV} (--tracking-uri overrides it)")
    cfg = load(args, overrides)
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


def _validate_args(p: argparse.ArgumentParser) -> None:
    add_config(p)


def _cmd_validate(args: argparse.Namespace) -> int:
    from ragsweep.search.startup import prepare

    cfg = load(args)
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
    from ragsweep.search.startup import check_gpu_fit

    for line in check_gpu_fit(cfg):  # prepare() raised already if a server cannot fit; these are the numbers
        print(line)
    return 0


def _init_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="the folder to write (new or empty)")


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


def _config_schema_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", type=Path, help="write to this file instead of stdout")


def _cmd_schema(args: argparse.Namespace) -> int:
    from ragsweep.search.config import config_json_schema

    text = json.dumps(config_json_schema(), indent=2)
    if args.output:
        from ragsweep.pipelines.base.files import write_text_atomic

        write_text_atomic(args.output, text + "\n")
    else:
        print(text)
    return 0


COMMANDS = [
    Command(
        name="search",
        help="run a configuration search (same as python search/run.py)",
        description="Run a configuration search and register the best trial as champion.",
        arguments=_search_args,
        run=_cmd_search,
    ),
    Command(
        name="validate",
        help="check a config and its dataset without running anything",
        description="Validate the experiment YAML and its dataset; print a summary.",
        arguments=_validate_args,
        run=_cmd_validate,
    ),
    Command(
        name="init",
        help="write a starter config and the bundled samples into a new folder",
        description=(
            "Write DIR/config.yaml (the default search, every key documented in docs/config.md), DIR/data/xquad_en (the"
            " sample corpus and questions it searches) and DIR/data/mixed_docs (documents to try `ragsweep ingest` on)."
            " DIR must be new or empty: nothing is overwritten."
        ),
        arguments=_init_args,
        run=_cmd_init,
    ),
    Command(
        name="config-schema",
        help="print the JSON Schema of the experiment YAML",
        description="Print (or write) the JSON Schema of the experiment config, for editors.",
        arguments=_config_schema_args,
        run=_cmd_schema,
    ),
]
