"""The experiment config: one YAML file validated into frozen pydantic models.

Contract: :func:`load_config` returns a valid :class:`ExperimentConfig` with every relative path resolved
against the config file's folder, or raises :class:`ConfigError` whose message names the file, the YAML
line and the field (with a did-you-mean for unknown keys). Unknown keys are rejected, never ignored.

One module per group of sections (:mod:`.fields` the field types and the error, :mod:`.endpoints` ``pipeline``
and ``llm``, :mod:`.judging` ``judges`` and ``objective``, :mod:`.sections` ``search``, ``mlflow``,
``promotion`` and ``dataset``, :mod:`.experiment` the whole file), :mod:`.loading` reads one; import from here.
"""

from ragsweep.search.config.endpoints import (
    GPU_MEMORY_GB,
    EmbedderEndpoint,
    GpuSettings,
    LLMSettings,
    ModelEndpoint,
    PipelineSettings,
)
from ragsweep.search.config.experiment import ExperimentConfig, loggable
from ragsweep.search.config.fields import ConfigError
from ragsweep.search.config.judging import JudgeSettings, Objective
from ragsweep.search.config.loading import OVERRIDES, config_json_schema, format_validation_error, load_config
from ragsweep.search.config.sections import (
    DatasetSettings,
    MLflowSettings,
    PromotionSettings,
    RedactSettings,
    SearchSettings,
)

__all__ = [
    "GPU_MEMORY_GB",
    "OVERRIDES",
    "ConfigError",
    "DatasetSettings",
    "EmbedderEndpoint",
    "ExperimentConfig",
    "GpuSettings",
    "JudgeSettings",
    "LLMSettings",
    "MLflowSettings",
    "ModelEndpoint",
    "Objective",
    "PipelineSettings",
    "PromotionSettings",
    "RedactSettings",
    "SearchSettings",
    "config_json_schema",
    "format_validation_error",
    "load_config",
    "loggable",
]
