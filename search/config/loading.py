"""Reading a config file: CLI overrides, validation errors that name the file, line and field; the JSON
schema."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from ragsweep.pipelines.base.files import read_text_file
from ragsweep.pipelines.base.secrets import SECRETS
from ragsweep.pipelines.base.yaml_lines import key_lines, load_yaml, yaml_error_line
from ragsweep.search.config.experiment import (
    ExperimentConfig,
)
from ragsweep.search.config.fields import (
    ConfigError,
)

# ---- loading -------------------------------------------------------------------------------------------

# CLI flag -> dotted config key. The CLI offers these overrides; docs list them in README.
OVERRIDES: dict[str, str] = {
    "num_samples": "search.num_samples",
    "max_concurrent_trials": "search.max_concurrent_trials",
    "questions_per_trial": "search.questions_per_trial",
    "seed": "search.seed",
    "sampler": "search.sampler",
    "scheduler": "search.scheduler",
    "strategy": "search.strategy",
    "selection": "search.selection",
    "finalists": "search.finalists",
    "holdout": "dataset.holdout",
    "max_llm_calls": "search.max_llm_calls",
    "time_budget_s": "search.time_budget_s",
    "ray_address": "search.ray_address",
    "storage_path": "search.storage_path",
    "tracking_uri": "mlflow.tracking_uri",
    "experiment": "mlflow.experiment",
    "storage_dir": "storage_dir",
}


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model owning the last element of ``loc``, to suggest sibling field names."""
    model: Any = ExperimentConfig
    for part in loc[:-1]:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        ann = model.model_fields[part].annotation
        candidates = [ann, *get_args(ann)] if get_origin(ann) is not None else [ann]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


_UNION_NOISE = {"list_type", "model_type", "dict_type", "model_attributes_type"}
_SHOW_INPUT = {
    "int_parsing",
    "float_parsing",
    "bool_parsing",
    "int_type",
    "float_type",
    "string_type",
    "finite_number",
    "greater_than_equal",
    "greater_than",
    "less_than_equal",
    "less_than",
    "literal_error",
}


def _yaml_path(loc: tuple[Any, ...]) -> tuple[str, ...]:
    """pydantic's error location without its union-branch tags (IntRange, list[int]): the path in the YAML."""
    parts = tuple(str(p) for p in loc if not str(p).startswith(("list[", "function-", "constrained-")))
    return tuple(p for p in parts if p not in {"IntRange", "FloatRange"})


_SECTIONS = "dataset|space|pipeline|llm|judges|objective|search|mlflow|promotion"
_NAMED_KEY = re.compile(rf"((?:{_SECTIONS})(?:\.[A-Za-z_0-9]+)+):")  # a message that starts with the key it is about


def format_validation_error(
    err: ValidationError,
    source: str,
    lines: dict[tuple[str, ...], int],
    flags: dict[tuple[str, ...], str] | None = None,
) -> str:
    """One line per problem: where (the command-line flag that set the value, else the YAML line), the dotted
    field and the reason."""
    flags = flags or {}
    errors = err.errors()
    # A value that fits no branch of a union (a list or a range) fails every branch; keep the branch that got
    # deeper (e.g. "step: must be >= 1") over "should be a valid list" at the key itself.
    locs = [_yaml_path(e["loc"]) for e in errors]
    errors = [
        e
        for e, loc in zip(errors, locs, strict=True)
        if not (e["type"] in _UNION_NOISE and any(len(o) > len(loc) and o[: len(loc)] == loc for o in locs))
    ]
    out = [f"{source}: invalid experiment config ({len(errors)} problem(s))"]
    for e in errors:
        loc = _yaml_path(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        named = _NAMED_KEY.match(msg)
        if not loc and named:  # a check across sections names its key first: that key's line, not none
            loc, msg = tuple(named.group(1).split(".")), msg[named.end() :].lstrip(": ")
        field = ".".join(loc) or "(top level)"
        flag = next((flags[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in flags), None)
        line = next((lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in lines), None)
        where = f"flag {flag}, " if flag else f"line {line}, " if line else ""
        if e["type"] in _SHOW_INPUT and isinstance(e.get("input"), (str, int, float, bool)):
            msg += f" (got {e['input']!r})"
        if e["type"] == "extra_forbidden" and loc:
            model = _model_at(loc)
            if model is not None:
                hint = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
                msg = f"unknown key {loc[-1]!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                msg += f"; allowed: {', '.join(model.model_fields)}"
        out.append(f"  {where}{field}: {msg}")
    return "\n".join(out)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot override {dotted}: {p} is not a mapping")
    node[leaf] = value


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read, override (CLI flag names of :data:`OVERRIDES`) and validate an experiment YAML file."""
    path = Path(path).expanduser()  # "~/ragsweep/..." arrives unexpanded when quoted (ray submit)
    text = read_text_file(path, "config file", ConfigError)
    try:
        data = load_yaml(text)
    except yaml.YAMLError as e:
        line = yaml_error_line(e)
        where = f"line {line}: " if line else ""
        raise ConfigError(f"{path}: {where}invalid YAML: {getattr(e, 'problem', None) or e}") from None
    if data is None:
        raise ConfigError(
            f"{path}: the config file is empty (no keys, or only comments): start from "
            "configs/default.yaml; docs/config.md lists every key"
        )
    if not isinstance(data, dict):
        kind = {list: "a list", str: "a single string", int: "a number", float: "a number", bool: "true/false"}
        raise ConfigError(
            f"{path}: expected a mapping of keys (dataset:, space:, ...) at the top level, got "
            f"{kind.get(type(data), type(data).__name__)}"
        )
    flags: dict[tuple[str, ...], str] = {}
    for flag, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, OVERRIDES[flag], value)
            flags[tuple(OVERRIDES[flag].split("."))] = "--" + flag.replace("_", "-")
    try:
        cfg = ExperimentConfig.model_validate(data, context={"base_dir": path.resolve().parent})
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, str(path), key_lines(text), flags)) from None
    SECRETS.add(*cfg.secret_values())
    if cfg.dataset.corpus.is_dir():  # a folder of documents: its parsed corpus (cached by content)
        from ragsweep.pipelines.ingest import cached_corpus

        corpus = cached_corpus(cfg.dataset.corpus, cfg.storage_dir / "ingest-cache")
        cfg = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"corpus": corpus})})
    return cfg


def config_json_schema() -> dict[str, Any]:
    """JSON Schema of the experiment YAML, for editors (``ragsweep config-schema``)."""
    schema = ExperimentConfig.model_json_schema()
    schema["title"] = "ragsweep experiment config"
    return schema
