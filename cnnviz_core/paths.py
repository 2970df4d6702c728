"""Confined server paths: the one place that decides which files the server may open for a visitor.

A path a visitor types (or one written inside a results file) is opened only when it lies under one
of the configured roots:

* :func:`data_roots` - results folders and images, from ``CNNVIZ_DATA_ROOT`` (an ``os.pathsep``
  list, e.g. ``/srv/results:/srv/scenes``); default ``<cwd>/results``.
* :func:`model_roots` - model files, from ``CNNVIZ_MODEL_ROOT``; default ``<cwd>/models``.

:func:`confine` resolves a path (following symlinks) and returns it only when it is one of the roots
or inside one; :func:`safe_join` does the same for a relative path stored in a results file against
its own folder. Both refuse ``..`` components, NUL bytes and empty text with one
:class:`~cnnviz_core.errors.PathNotAllowedError` line; a symlink that leads out is refused because
its target is outside. Roots are read from the environment on every call.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

from .errors import PathNotAllowedError, one_line

DATA_ROOT_ENV = "CNNVIZ_DATA_ROOT"
MODEL_ROOT_ENV = "CNNVIZ_MODEL_ROOT"


def _roots(env: str, default: str) -> tuple[Path, ...]:
    entries = [e.strip() for e in os.environ.get(env, "").split(os.pathsep) if e.strip()]
    cwd = Path.cwd()
    return tuple(dict.fromkeys((cwd / Path(e).expanduser()).resolve() for e in (entries or [default])))


def data_roots() -> tuple[Path, ...]:
    """Folders the server may read results and images from: ``CNNVIZ_DATA_ROOT`` (``os.pathsep``
    list; relative entries from the cwd), or ``<cwd>/results`` when unset. Resolved, no duplicates."""
    return _roots(DATA_ROOT_ENV, "results")


def model_roots() -> tuple[Path, ...]:
    """Folders the server may load model files from: ``CNNVIZ_MODEL_ROOT``, or ``<cwd>/models``."""
    return _roots(MODEL_ROOT_ENV, "models")


def shown(text: Union[str, Path], limit: int = 120) -> str:
    """``text`` safe to echo in one line (see :func:`~cnnviz_core.errors.one_line`)."""
    return one_line(str(text), limit)


def _check_text(text: Union[str, Path], what: str) -> Path:
    raw = os.fspath(text)
    if not raw.strip():
        raise PathNotAllowedError(f"{what}: empty path")
    if "\x00" in raw:
        raise PathNotAllowedError(f"{what} {shown(raw)!r} contains a NUL byte")
    path = Path(raw)
    if ".." in path.parts:
        raise PathNotAllowedError(f"{what} {shown(raw)!r} contains '..'; give a path without it")
    return path


def is_within(path: Path, roots: Sequence[Path]) -> bool:
    """True when ``path`` (resolved, symlinks followed) is one of ``roots`` or inside one."""
    resolved = Path(path).resolve(strict=False)
    return any(resolved.is_relative_to(Path(root).resolve(strict=False)) for root in roots)


def confine(text: Union[str, Path], roots: Sequence[Path], *, what: str = "path",
            base: Optional[Path] = None, env: str = DATA_ROOT_ENV) -> Path:
    """The resolved ``text`` when it is one of ``roots`` or inside one, else
    :class:`~cnnviz_core.errors.PathNotAllowedError` (one line naming the roots and ``env``).

    A relative ``text`` is taken from ``base`` (default: the first root, never the cwd). Symlinks are
    followed (``Path.resolve``), so one that leads out of the roots is refused. ``..`` components,
    NUL bytes and empty text are refused before resolving. Nothing is opened; the path need not exist.

    Examples:
        >>> confine("run1", [Path("/srv/results")])            # doctest: +SKIP
        PosixPath('/srv/results/run1')
        >>> confine("/etc/passwd", [Path("/srv/results")])     # doctest: +SKIP
        Traceback (most recent call last):
        PathNotAllowedError: path '/etc/passwd' is outside the allowed folders; the server reads only under /srv/results ...
    """
    roots = tuple(Path(r).resolve(strict=False) for r in roots)
    where = (f"the server reads only under {', '.join(map(str, roots))} (set {env}, separated by "
             f"'{os.pathsep}', to change them)" if roots else f"no allowed folders are configured; set {env}")
    try:
        path = _check_text(text, what)
    except PathNotAllowedError as exc:
        raise PathNotAllowedError(f"{exc}; {where}") from None
    if not roots:
        raise PathNotAllowedError(f"{what} {shown(text)!r}: {where}")
    if not path.is_absolute():
        path = Path(base if base is not None else roots[0]) / path
    resolved = path.resolve(strict=False)
    if not any(resolved.is_relative_to(root) for root in roots):
        raise PathNotAllowedError(f"{what} {shown(text)!r} is outside the allowed folders; {where}")
    return resolved


def safe_join(folder: Path, relative: str) -> Path:
    """``folder / relative`` for a path stored inside a results file (e.g. ``map_path``): refuses an
    absolute ``relative``, ``..``, NUL bytes, empty text, and a result outside ``folder`` after
    resolving symlinks, with one :class:`~cnnviz_core.errors.PathNotAllowedError` line."""
    path = _check_text(relative, "stored path")
    if path.is_absolute():
        raise PathNotAllowedError(f"stored path {shown(relative)!r} is absolute; only paths inside the "
                                  f"results folder are read")
    root = Path(folder).resolve(strict=False)
    resolved = (root / path).resolve(strict=False)
    if not resolved.is_relative_to(root):
        raise PathNotAllowedError(f"stored path {shown(relative)!r} leads out of the results folder")
    return resolved
