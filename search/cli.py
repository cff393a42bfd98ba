"""The ``ragsweep`` command: search, ask, validate, config-schema, judges calibrate.

Exit codes: 0 success; 1 the search failed (the reason is printed and on the MLflow parent run);
2 bad input (config, dataset, model file) found before any work; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DEFAULT_CONFIG = Path("configs/default.yaml")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help=f"experiment YAML (default: {DEFAULT_CONFIG})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragsweep", description="Search RAG configurations; register the winner.")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("search", help="run a configuration search (same as python search/run.py)",
                       description="Run a configuration search and register the best trial as champion.")
    _add_config(s)
    s.add_argument("--num-samples", type=int, help="trials to run (search.num_samples)")
    s.add_argument("--max-concurrent-trials", type=int, help="trials at once (search.max_concurrent_trials)")
    s.add_argument("--questions-per-trial", type=int, help="questions each trial answers")
    s.add_argument("--seed", type=int, help="seed for the sampler and the question order")
    s.add_argument("--sampler", choices=["tpe", "random", "grid", "nsga2"], help="search.sampler")
    s.add_argument("--scheduler", choices=["asha", "fifo"], help="search.scheduler")
    s.add_argument("--max-llm-calls", type=int, help="stop after this many LLM requests (search.max_llm_calls)")
    s.add_argument("--time-budget-s", type=float, help="stop after this many seconds of trials")
    s.add_argument("--resume", metavar="EXPERIMENT",
                   help="continue the newest unfinished search of this MLflow experiment (same config); "
                        "finished trials are kept, unfinished ones restart")
    s.add_argument("--ray-address", help="join this Ray cluster ('auto' = the local one) instead of starting Ray")
    s.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite file in storage_dir)")
    s.add_argument("--experiment", help="MLflow experiment name")
    s.add_argument("--storage-dir", help="folder for Ray results, caches and the default MLflow store")

    a = sub.add_parser("ask", help="answer a question with the registered champion",
                       description="Load models:/<model-name>@champion and answer, printing the sources.")
    a.add_argument("question")
    _add_config(a)
    a.add_argument("--tracking-uri", help="MLflow tracking URI (default: the config's store)")
    a.add_argument("--model-name", help="registered model name (default: the config's mlflow.model_name)")
    a.add_argument("--alias", default="champion", help="model alias to load (default: champion)")
    a.add_argument("--json", action="store_true", help="print the answer and sources as JSON")

    v = sub.add_parser("validate", help="check a config and its dataset without running anything",
                       description="Validate the experiment YAML and its dataset; print a summary.")
    _add_config(v)

    j = sub.add_parser("judges", help="work with the LLM judges (judges calibrate)",
                       description="Work with the LLM judges of the config's judges section.")
    jsub = j.add_subparsers(dest="judges_command", required=True)
    cal = jsub.add_parser(
        "calibrate", help="measure how well the judges agree with known-good and known-bad answers",
        description="Score gold answers and deliberately wrong ones (another question's answer or passage), and "
                    "optionally human-labelled answers, with every configured judge; print and log to MLflow per "
                    "judge: accuracy, Spearman, self-consistency over repeats, calls and tokens per answer.")
    _add_config(cal)
    cal.add_argument("--dataset", type=Path,
                     help="folder with corpus.jsonl and questions.jsonl (default: the config's dataset)")
    cal.add_argument("--labels", type=Path,
                     help='JSON lines {"id": question id, "answer": "...", "label": 0..1[, "contexts": [...]]}')
    cal.add_argument("--questions", type=int, default=16, help="questions to sample (default 16)")
    cal.add_argument("--repeats", type=int, default=2, help="times each verdict is asked (default 2)")
    cal.add_argument("--seed", type=int, default=0, help="seed of the question sample")
    cal.add_argument("--tracking-uri", help="MLflow tracking URI (default: the config's store)")

    c = sub.add_parser("config-schema", help="print the JSON Schema of the experiment YAML",
                       description="Print (or write) the JSON Schema of the experiment config, for editors.")
    c.add_argument("--output", type=Path, help="write to this file instead of stdout")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    from search.config import OVERRIDES

    return {k: getattr(args, k) for k in OVERRIDES if getattr(args, k, None) is not None}


def _cmd_search(args: argparse.Namespace) -> int:
    from search.config import load_config
    from search.driver import run_search

    overrides = _overrides(args)
    if args.resume:
        overrides["experiment"] = args.resume
    cfg = load_config(args.config, overrides)
    out = run_search(cfg, args.config, resume=bool(args.resume))
    model = f"{out.model_name}@champion (v{out.model_version})" if out.model_version else None
    print(json.dumps({"parent_run_id": out.parent_run_id,
                      "best_objective": round(out.best_objective, 4) if out.model_version else None,
                      "best_params": out.best_params, "model": model, "tracking_uri": out.tracking_uri}, indent=2))
    return 0


def _cmd_ask(args: argparse.Namespace) -> int:
    import mlflow
    import pandas as pd

    from search.config import load_config
    from search.promote import load_champion
    from search.tracking import default_tracking_uri

    uri, name = args.tracking_uri, args.model_name
    if uri is None or name is None:
        cfg = load_config(args.config)
        uri = uri or cfg.mlflow.tracking_uri or default_tracking_uri(cfg.storage_dir)
        name = name or cfg.mlflow.model_name
    mlflow.set_tracking_uri(uri)
    try:
        model = load_champion(name, args.alias)
    except mlflow.exceptions.MlflowException as e:
        print(f"ragsweep ask: no model {name}@{args.alias} in {uri}: {e.message}", file=sys.stderr)
        return 2
    out = model.predict(pd.DataFrame({"question": [args.question]}))
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


def _cmd_validate(args: argparse.Namespace) -> int:
    from search.config import load_config
    from search.driver import prepare

    cfg = load_config(args.config)
    ds = prepare(cfg)
    print(f"{args.config}: OK — {len(ds.corpus)} documents, {len(ds.questions)} questions, "
          f"{cfg.search.num_samples} trials, objective {cfg.objective.weights}")
    return 0


def _cmd_judges(args: argparse.Namespace) -> int:
    from search.calibration import run_calibration
    from search.config import load_config

    cfg = load_config(args.config)
    _, table = run_calibration(cfg, dataset_dir=args.dataset, labels=args.labels, questions=args.questions,
                               repeats=args.repeats, seed=args.seed, tracking_uri=args.tracking_uri)
    print(table)
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from search.config import config_json_schema

    text = json.dumps(config_json_schema(), indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    else:
        print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = _parser().parse_args(argv)
    from pipelines.data import DatasetError
    from pipelines.embed import EmbedderError
    from pipelines.prompts import PromptError
    from search.config import ConfigError
    from search.resume import ResumeError
    from search.serving import ServerError, ServingSetupError

    handlers = {"search": _cmd_search, "ask": _cmd_ask, "validate": _cmd_validate, "config-schema": _cmd_schema,
                "judges": _cmd_judges}
    try:
        return handlers[args.command](args)
    except (ConfigError, DatasetError, PromptError, EmbedderError, ServingSetupError, ResumeError) as e:
        print(f"ragsweep {args.command}: {e}", file=sys.stderr)
        return 2
    except ServerError as e:
        print(f"ragsweep {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ragsweep {args.command}: interrupted; servers stopped and runs closed", file=sys.stderr)
        return 130
    except Exception as e:  # the reason is also on the MLflow parent run (FAILED)
        print(f"ragsweep {args.command}: failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
