"""What every ``ragsweep`` command shares: the :class:`Command` record (its arguments beside its handler, in the
command's own module), the default config, the config and model flags, numeric argument types, and flag checks
that blame the flag or environment variable the user set."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Command:
    """One ``ragsweep`` command: its name, its one-line help and description, the function that adds its arguments
    to its parser, and the handler that runs it (returns the exit code)."""

    name: str
    help: str
    description: str | None = None
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


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


def choices(key: str) -> list[str]:
    """The names of a registry (search/registries.py), so the CLI and the config never disagree."""
    from ragsweep.search import registries

    return list(
        {"sampler": registries.SAMPLERS, "scheduler": registries.SCHEDULERS, "selection": registries.SELECTION_RULES}[
            key
        ].names()
    )


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"experiment YAML (default: ${CONFIG_ENV}, else configs/default.yaml of the ragsweep project)",
    )


def add_model_args(p: argparse.ArgumentParser, alias: bool = True) -> None:
    add_config(p)
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the config's store)")
    p.add_argument("--model-name", help="registered model name (default: the config's mlflow.model_name)")
    if alias:
        p.add_argument("--alias", default="champion", help="model alias to load (default: champion)")


def number(kind: type[int] | type[float], low: float | None = None, high: float | None = None) -> Any:
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


def port(text: str) -> int:
    """argparse type: a TCP port number 1..65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (1-65535)")
    return port


def load(args: argparse.Namespace, overrides: dict[str, object] | None = None) -> Any:
    """The command's config: --config, else the default (:func:`default_config`), which must exist."""
    from ragsweep.search.config import ConfigError, load_config

    source = getattr(args, "config_source", None)
    if source and not Path(args.config).is_file():
        raise ConfigError(
            f"no --config given, and the default from {source} ({args.config}) is not a file: pass "
            f"--config FILE or set {CONFIG_ENV}"
        )
    return load_config(args.config, overrides)


def flag_overrides(args: argparse.Namespace) -> dict[str, object]:
    from ragsweep.search.config import OVERRIDES

    return {k: getattr(args, k) for k in OVERRIDES if getattr(args, k, None) is not None}


def check_flag(flag: str, value: str | None, check: Any) -> None:
    """A flag's value through the config's own check; a bad one is blamed on the flag."""
    from ragsweep.search.config import ConfigError

    if value is not None:
        try:
            check(value)
        except ValueError as e:
            raise ConfigError(f"{flag}: {e}") from None


def model_location(args: argparse.Namespace) -> tuple[str, str]:
    """Tracking URI and model name from the flags, else the config; the URI is set and checked."""
    import mlflow

    from ragsweep.search.promotion.champion import INDEX_CACHE_ENV
    from ragsweep.search.schema import check_model_name, check_tracking_uri
    from ragsweep.search.tracking.runs import check_tracking, default_tracking_uri, hide_credentials, require_store

    uri, name = args.tracking_uri or os.environ.get(TRACKING_ENV) or None, args.model_name
    check_flag("--tracking-uri" if args.tracking_uri else TRACKING_ENV, uri, check_tracking_uri)
    check_flag("--model-name", name, check_model_name)
    if uri is None or name is None:
        cfg = load(args)
        uri = uri or cfg.mlflow.tracking_uri or default_tracking_uri(cfg.storage_dir)
        name = name or cfg.mlflow.model_name
        os.environ.setdefault(INDEX_CACHE_ENV, str(cfg.index_cache))
    check_tracking(uri)
    require_store(uri)  # a read-only command never creates an empty store
    hide_credentials(uri)
    mlflow.set_tracking_uri(uri)
    return uri, name
