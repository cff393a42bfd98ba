"""The base of every config model: frozen (a config cannot change under a running search), no unknown keys, and
no silent conversions: NaN and infinities are refused, and a boolean is never read as a number (``true`` is not 1)."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

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
