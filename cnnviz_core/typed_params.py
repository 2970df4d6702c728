"""Typed parameters and papers, shared by the method registry (:mod:`cnnviz_core.attribution.registry`)
and the metric registry (:mod:`cnnviz_core.metrics.registry`).

A method's or metric's parameters are a frozen dataclass subclassing :class:`Params`; its
``__post_init__`` coerces and checks each field with the validators below (``"16"`` from a CLI
becomes 16), and a bad value raises :class:`~cnnviz_core.errors.ParameterError` naming the
parameter. :func:`resolve_params` builds one such instance from a request's flat parameters and its
per-key options; :func:`resolve_keys` validates the requested keys against a registry.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from .errors import ParameterError


@dataclass(frozen=True)
class Paper:
    authors: str
    year: int
    title: str
    link: str

    def cite(self) -> str:
        return f"{self.authors} ({self.year}), {self.title}, {self.link}"


class Params:
    """Base of the per-method and per-metric parameter dataclasses (frozen; validated and coerced in
    ``__post_init__``; a bad value raises :class:`ParameterError` naming the parameter)."""

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class NoParams(Params):
    """Methods and metrics without parameters."""


# ---- validators ----------------------------------------------------------------------------------
def integer(name: str, value: Any) -> int:
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be an integer, got {value!r}") from None


def positive_int(name: str, value: Any) -> int:
    try:
        v = integer(name, value)
    except ParameterError:
        v = 0
    if v < 1:
        raise ParameterError(f"{name} must be an integer >= 1, got {value!r}")
    return v


def real(name: str, value: Any, *, low: float = -math.inf, high: float = math.inf,
         low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float in the interval (``low_open``/``high_open``: excluding that end)."""
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok or math.isnan(v):
        lo, hi = ("(" if low_open else "[") + f"{low:g}", f"{high:g}" + (")" if high_open else "]")
        raise ParameterError(f"{name} must be in {lo}, {hi}, got {value!r}")
    return v


def boolean(name: str, value: Any) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    if isinstance(value, (bool, int, np.bool_)) and value in (0, 1):
        return bool(value)
    raise ParameterError(f"{name} must be true or false, got {value!r}")


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise ParameterError(f"unknown {name} {value!r}; choose {', '.join(options)}")
    return str(value)


def real_tuple(name: str, value: Any, *, low: float, high: float) -> tuple[float, ...]:
    """A non-empty tuple of floats strictly inside (low, high), from a sequence or ``"10,20,30"``."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    try:
        values = tuple(value)
    except TypeError:
        raise ParameterError(f"{name} must be a list of numbers, got {value!r}") from None
    if not values:
        raise ParameterError(f"{name} must not be empty")
    out = tuple(real(name, v, low=low, high=high, low_open=True, high_open=True) for v in values)
    if len(set(out)) != len(out):
        raise ParameterError(f"{name} has repeated values: {value!r}")
    return out


# ---- resolution against a registry ---------------------------------------------------------------
def resolve_keys(keys: Union[str, Sequence[str]], registry: Mapping[str, Any], what: str) -> list[Any]:
    """Validate ``keys`` (one key, a comma list or a sequence) against ``registry`` -> its entries,
    order kept, no duplicates; ``what`` names the kind in messages ("method", "metric")."""
    wanted = [k.strip() for k in keys.split(",")] if isinstance(keys, str) else [str(k).strip() for k in keys]
    wanted = [k for k in dict.fromkeys(wanted) if k]
    if not wanted:
        raise ParameterError(f"no {what} given; choose from {', '.join(registry)}")
    unknown = [k for k in wanted if k not in registry]
    if unknown:
        raise ParameterError(f"unknown {what} {unknown[0]!r}; choose from {', '.join(registry)}")
    return [registry[k] for k in wanted]


def check_flat_params(params: Mapping[str, Any], entries: Sequence[Any], what: str) -> None:
    """Every flat parameter must be a field of some entry's ``params_type`` (``what`` names the kind)."""
    allowed = sorted({f.name for e in entries for f in dataclasses.fields(e.params_type)})
    for name in params:
        if name not in allowed:
            raise ParameterError(f"unknown {what} {name!r}; allowed: {', '.join(allowed)}")


def resolve_params(key: str, params_type: type, params: Mapping[str, Any],
                   options: Optional[Mapping[str, Any]] = None) -> Params:
    """The typed parameters of the entry ``key``: ``params_type``'s defaults, overridden by the flat
    ``params`` it has a field for, overridden by ``options[key]`` (an instance of ``params_type`` or
    a dict of its fields)."""
    own = (options or {}).get(key)
    if isinstance(own, params_type):
        return own
    if own is not None and not isinstance(own, Mapping):
        raise ParameterError(f"parameters of {key!r} must be {params_type.__name__} or a dict, "
                             f"got {type(own).__name__}")
    fields = {f.name for f in dataclasses.fields(params_type)}
    values = {k: v for k, v in params.items() if k in fields}
    for k, v in (own or {}).items():
        if k not in fields:
            raise ParameterError(f"{key} has no parameter {k!r}; it has {', '.join(sorted(fields)) or 'none'}")
        values[k] = v
    return params_type(**values)
