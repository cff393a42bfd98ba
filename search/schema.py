"""The base of every config model: frozen (a config cannot change under a running search), no unknown keys, and
no silent conversions: NaN and infinities are refused, and a boolean is never read as a number (``true`` is not 1).

Also the checks of single values that need no network (URLs, URIs, MLflow names), which config fields, CLI flags and
the tracking wing share. Contract: each ``check_*`` returns its (unchanged) argument or raises ``ValueError`` with
one sentence saying what is wrong and what is allowed. MLflow's own validators decide MLflow names, so a name that
passes here is one MLflow accepts at the end of a search, not only at its start. No function reads the network or
writes a file."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def _kinds(annotation: Any) -> set[type]:
    """The plain types an annotation is built from (through Annotated, unions, lists and dict values)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _kinds(get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple, set, dict):
        args = get_args(annotation)
        return set().union(*(_kinds(a) for a in (args[1:] if origin is dict else args)))
    return {annotation} if isinstance(annotation, type) else set()


def _bools(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return any(isinstance(v, bool) for v in value)
    return isinstance(value, dict) and any(isinstance(v, bool) for v in value.values())


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is not None and _bools(value):
            kinds = _kinds(cls.model_fields[info.field_name].annotation)
            if kinds & {int, float} and bool not in kinds:
                raise ValueError(f"expected a number, got a boolean ({value!r}); YAML reads true/false as booleans")
        return value


# pyarrow's own filesystems (Ray Tune tries them first); fsspec's known implementations are the fallback.
_PYARROW_SCHEMES = {"file", "local", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss"}


def check_http_url(value: str) -> str:
    """An http(s) URL with a host, e.g. ``http://host:8000/v1``."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{mask_uri(value)!r} is not an http(s) URL with a host, e.g. http://host:8000/v1")
    try:
        parts.port  # noqa: B018  # raises on a port that is not a number or out of range
    except ValueError as e:
        raise ValueError(f"{mask_uri(value)!r}: {e}") from None
    return value


def check_experiment_name(value: str) -> str:
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_experiment_name

    if not value.strip():
        raise ValueError("an MLflow experiment name cannot be empty")
    try:
        _validate_experiment_name(value)
    except MlflowException as e:
        raise ValueError(e.message) from None
    return value


def check_model_name(value: str) -> str:
    """A registered model name MLflow accepts, without '@' (ragsweep addresses models as models:/NAME@ALIAS)."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_name

    try:
        _validate_model_name(value)
    except MlflowException as e:
        raise ValueError(e.message) from None
    if "@" in value:
        raise ValueError(f"invalid model name {value!r}: '@' separates a model from its alias in models:/NAME@ALIAS")
    return value


def check_tracking_uri(value: str) -> str:
    """A tracking URI whose scheme MLflow has a store for (http, https, sqlite, postgresql, file, a path...)."""
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    scheme = urlsplit(value).scheme.split("+")[0] if "://" in value or value.startswith("sqlite:") else ""
    known = sorted(s for s in _tracking_store_registry._registry if s)
    if scheme and scheme not in known:
        raise ValueError(
            f"unknown tracking URI scheme {scheme!r} in {mask_uri(value)!r}; MLflow knows: {', '.join(known)}"
        )
    if scheme in ("http", "https"):
        check_http_url(value)
    return value


def check_storage_uri(value: str) -> str:
    """A plain path or a URI whose filesystem Ray Tune can open (pyarrow's or fsspec's)."""
    if "://" not in value:
        return value
    from fsspec.registry import known_implementations

    scheme = urlsplit(value).scheme
    if scheme not in _PYARROW_SCHEMES and scheme not in known_implementations:
        raise ValueError(
            f"unknown filesystem {scheme!r} in {mask_uri(value)!r}: use a path on shared storage or a "
            "URI such as s3://bucket/prefix or gs://bucket/prefix"
        )
    if not urlsplit(value).netloc and scheme not in ("file", "local"):
        raise ValueError(f"{mask_uri(value)!r} names no bucket or host")
    return value


def mask_uri(value: str) -> str:
    """``value`` with the password of ``scheme://user:password@host`` replaced by ``***``."""
    parts = urlsplit(value)
    if parts.password is None:
        return value
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
