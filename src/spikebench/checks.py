"""Type and finiteness checks of user-given values (spec fields, neuron parameters, rule
options): a wrong type, NaN or infinity is a ``ConfigError`` naming the field, never a
traceback from deep inside or a silently wrong run."""

from __future__ import annotations

import inspect
import math
from dataclasses import fields

from spikebench.errors import ConfigError


def _fits(value, kind: str) -> bool:
    """Whether ``value`` fits the annotation text ``kind`` (no spaces, no ``|None``)."""
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool)
        and math.isfinite(value),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
    }.get(kind)
    if ok is not None:
        return ok
    if kind.startswith("tuple"):
        return isinstance(value, tuple | list)
    if kind.startswith("dict"):
        return isinstance(value, dict)
    if kind.startswith("list"):
        return isinstance(value, list | tuple) and all(isinstance(v, str | int) for v in value)
    return True


def _check(name: str, value, annotation) -> None:
    kind = (annotation.__name__ if isinstance(annotation, type) else str(annotation)
            ).replace(" ", "")
    optional = kind.endswith("|None")
    kind = kind.removesuffix("|None")
    if (value is None and optional) or _fits(value, kind):
        return
    what = "a finite number" if kind == "float" else f"of type {kind}"
    raise ConfigError(f"{name} must be {what}{' or None' if optional else ''}, got {value!r}")


def check_field_types(obj, flags: dict[str, str] | None = None) -> None:
    """Check a dataclass's fields against their annotations (int, float, str, bool,
    optional ones, tuples and dicts): ``seed=1.5``, ``lr=nan`` or ``rules="bptt"`` are
    errors that name the field (``flags``: the command-line flag of a field), never
    silently accepted."""
    for f in fields(obj):
        name = f"{type(obj).__name__}.{f.name}"
        if flags and f.name in flags:
            name = f"{flags[f.name]} ({name})"
        _check(name, getattr(obj, f.name), f.type)


def check_arguments(fn, kwargs: dict, what: str) -> None:
    """Check keyword arguments for ``fn`` against its annotated parameters (a rule's
    options: ``readout_scale=inf`` or ``chunk="10"``); unknown names are left to the call."""
    params = inspect.signature(fn).parameters
    for key, value in kwargs.items():
        p = params.get(key)
        if p is not None and p.annotation is not inspect.Parameter.empty:
            _check(f"{what} option {key}", value, p.annotation)
