"""The ``ragsweep`` command line: builds one parser from every command's own module (``search/commands/``: a
command's arguments sit beside its handler) and turns errors into exit codes.

Exit codes: 0 success; 1 the search failed (the reason is printed and on the MLflow parent run);
2 bad input (config, dataset, model file, unknown run or model) found before any work; 3 ``promote``: the gates
did not pass (the version stays challenger), ``evaluate``: the model dropped below the interval it was promoted
on; 130 interrupted.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from ragsweep.search.commands import champion, searching, testsets
from ragsweep.search.commands.common import Command, default_config

# An OSError on a path with one of these is the user's path being wrong (exit 2), not the search failing.
USER_PATH_ERRNOS = {errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS}

IMPLICIT_MLFLOW_ENV = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")

COMMANDS: dict[str, Command] = {c.name: c for m in (searching, champion, testsets) for c in m.COMMANDS}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragsweep", description="Search RAG configurations; register the winner.")
    sub = parser.add_subparsers(dest="command", required=True)
    for c in COMMANDS.values():
        c.arguments(sub.add_parser(c.name, help=c.help, description=c.description))
    return parser


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
    from ragsweep.pipelines.base.errors import BadInput
    from ragsweep.pipelines.base.secrets import SECRETS
    from ragsweep.search.console import setup
    from ragsweep.search.serving.engines import ServerError

    setup(getattr(args, "verbose", 0))

    def say(message: str) -> None:
        print(f"ragsweep {args.command}: {SECRETS.mask(message)}", file=sys.stderr)

    try:
        return COMMANDS[args.command].run(args)
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
