"""Controls for a method's typed parameters, drawn from its parameter dataclass.

Every attribution method registers a frozen ``Params`` dataclass (:mod:`cnnviz_core.attribution.registry`)
whose ``__post_init__`` validates it. The CAM page draws one widget per field from the field's type
(``bool`` -> toggle, ``int`` / ``float`` -> number input, ``Optional[int]`` -> number input that may be
left empty for "auto", ``Literal[...]`` -> choice, ``tuple[int, ...]`` -> comma list, ``str`` -> text), so a method registered with new
parameters gets its controls without a page edit. Values are checked by the dataclass itself: a
refused value is one line under the controls and the method keeps its defaults.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, Optional, Union, get_args, get_origin

import streamlit as st

from cnnviz_core.errors import ParameterError

#: Fields every CAM-family method has: the page sets them once for all maps (see :func:`smoothing_controls`).
SHARED_FIELDS = ("aug_smooth", "eigen_smooth")


@dataclasses.dataclass(frozen=True)
class FieldKind:
    """How one parameter is drawn: ``kind`` in bool/int/float/choice/text; ``optional``: may be None
    (left empty = the method's automatic value); ``choices`` for ``Literal`` fields."""

    name: str
    kind: str
    default: Any
    optional: bool = False
    choices: tuple = ()


def _kind(name: str, hint: Any, default: Any) -> FieldKind:
    optional = False
    if get_origin(hint) is Union:
        args = [a for a in get_args(hint) if a is not type(None)]
        optional = len(args) < len(get_args(hint))
        hint = args[0] if len(args) == 1 else hint
    if get_origin(hint) is Literal:
        return FieldKind(name, "choice", default, optional, tuple(get_args(hint)))
    if get_origin(hint) is tuple:  # a list of numbers, typed as a comma list
        return FieldKind(name, "list", default, optional, tuple(a for a in get_args(hint) if a is not Ellipsis))
    if hint is bool:
        return FieldKind(name, "bool", default, optional)
    if hint is int:
        return FieldKind(name, "int", default, optional)
    if hint is float:
        return FieldKind(name, "float", default, optional)
    return FieldKind(name, "text", default, optional)


def field_kinds(params_type: type, *, skip: tuple[str, ...] = SHARED_FIELDS) -> list[FieldKind]:
    """The drawable fields of a parameter dataclass, in declaration order (``skip`` left out)."""
    hints = typing.get_type_hints(params_type)
    return [_kind(f.name, hints.get(f.name, str), f.default) for f in dataclasses.fields(params_type)
            if f.name not in skip]


def label(name: str) -> str:
    return name.replace("_", " ")


def param_controls(method: Any, key: str, container: Any = st) -> Optional[Any]:
    """Draw ``method``'s parameters (widget keys ``{key}_{field}``) and return its typed parameters,
    or None when it has nothing to set. A value the dataclass refuses is shown as one error line and
    the method's defaults are used."""
    kinds = field_kinds(method.params_type)
    if not kinds:
        return None
    values: dict[str, Any] = {}
    cols = container.columns(min(3, len(kinds)))
    for i, f in enumerate(kinds):
        col, wkey, text = cols[i % len(cols)], f"{key}_{f.name}", f"{method.display_name}: {label(f.name)}"
        if f.kind == "bool":
            values[f.name] = col.toggle(text, bool(f.default), key=wkey)
        elif f.kind == "choice":
            options = list(f.choices)
            if st.session_state.get(wkey) not in (None, *options):
                st.session_state.pop(wkey)
            values[f.name] = col.selectbox(text, options, options.index(f.default) if f.default in options else 0,
                                           key=wkey)
        elif f.kind in ("int", "float"):
            cast = int if f.kind == "int" else float
            value = col.number_input(text, value=None if f.default is None else cast(f.default),
                                     step=1 if f.kind == "int" else None, key=wkey,
                                     format=None if f.kind == "int" else "%.4g",
                                     placeholder="auto" if f.optional else None)
            values[f.name] = None if value is None else cast(value)
        elif f.kind == "list":
            given = col.text_input(text, ", ".join(map(str, f.default or ())), key=wkey, help="A comma list.")
            cast = f.choices[0] if f.choices and f.choices[0] in (int, float) else str
            try:
                values[f.name] = tuple(cast(v.strip()) for v in given.split(",") if v.strip())
            except ValueError:
                container.error(f"{method.display_name}: {label(f.name)} must be a comma list of "
                                f"{cast.__name__} values, got {given[:40]!r} (its defaults are used)",
                                icon=":material/error:")
                return method.params_type()
        else:
            values[f.name] = col.text_input(text, "" if f.default is None else str(f.default), key=wkey)
    values = {k: v for k, v in values.items() if not (v is None and not _optional(kinds, k))}
    try:
        return method.params_type(**values)
    except ParameterError as exc:
        container.error(f"{method.display_name}: {exc} (its defaults are used)", icon=":material/error:")
        return method.params_type()
    except (TypeError, ValueError) as exc:  # a value of the wrong kind for the dataclass
        container.error(f"{method.display_name}: {exc} (its defaults are used)", icon=":material/error:")
        return method.params_type()


def _optional(kinds: list[FieldKind], name: str) -> bool:
    return any(f.name == name and f.optional for f in kinds)


def with_shared(params: Any, **shared: Any) -> Any:
    """``params`` with the shared CAM options (``aug_smooth``, ``eigen_smooth``) set where it has them."""
    names = {f.name for f in dataclasses.fields(params)}
    given = {k: v for k, v in shared.items() if k in names}
    return dataclasses.replace(params, **given) if given else params
