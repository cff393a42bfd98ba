"""The config's building blocks: its error, path and URI field types, and the registry-backed names."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeAlias

from pydantic import (
    AfterValidator,
    ValidationInfo,
)

from ragsweep.judges.builtin import JUDGES
from ragsweep.pipelines.base.errors import BadInput
from ragsweep.pipelines.prompts import load_templates
from ragsweep.pipelines.stores import STORES
from ragsweep.search.registries import ENGINES, SAMPLERS, SCHEDULERS, SELECTION_RULES
from ragsweep.search.schema import (
    check_experiment_name,
    check_http_url,
    check_model_name,
    check_storage_uri,
    check_tracking_uri,
)

if TYPE_CHECKING:  # mypy sees plain names; pydantic validates them against the registries
    EngineName: TypeAlias = str
    SamplerName: TypeAlias = str
    SchedulerName: TypeAlias = str
    SelectionRule: TypeAlias = str
    JudgeName: TypeAlias = str
    StoreName: TypeAlias = str
else:
    EngineName, SamplerName = ENGINES.field(), SAMPLERS.field()
    SchedulerName, SelectionRule, JudgeName = SCHEDULERS.field(), SELECTION_RULES.field(), JUDGES.field()
    StoreName = STORES.field()


class ConfigError(BadInput):
    """The experiment config is invalid; the message names the file, line and field."""


def _resolve(value: Path | None, info: ValidationInfo) -> Path | None:
    """Relative paths are relative to the config file's folder (absolute paths survive Tune's chdir)."""
    if value is None:
        return None
    base = Path((info.context or {}).get("base_dir", "."))
    return (value if value.is_absolute() else base / value).resolve()


def _must_exist(value: Path | None) -> Path | None:
    if value is not None and not value.exists():
        raise ValueError(f"path does not exist: {value}")
    return value


def _must_be_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError(f"{value} is a folder, not a file" if value.is_dir() else f"not a file: {value}")
    return value


def _loads_templates(value: Path | None) -> Path | None:
    if value is not None:
        load_templates(value)  # PromptError (a ValueError) names the file and template
    return value


ExistingPath = Annotated[Path, AfterValidator(_resolve), AfterValidator(_must_exist)]
ExistingFile = Annotated[Path, AfterValidator(_resolve), AfterValidator(_must_exist), AfterValidator(_must_be_file)]
HttpUrl = Annotated[str, AfterValidator(check_http_url)]
StorageUri = Annotated[str, AfterValidator(check_storage_uri)]
TrackingUri = Annotated[str, AfterValidator(check_tracking_uri)]
ExperimentName = Annotated[str, AfterValidator(check_experiment_name)]
ModelName = Annotated[str, AfterValidator(check_model_name)]
# storage_dir is relative to the working directory (where a user expects ./ragsweep-runs), not the config.
CwdPath = Annotated[Path, AfterValidator(lambda v: v.expanduser().resolve())]
