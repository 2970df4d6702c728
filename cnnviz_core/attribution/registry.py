"""The method registry: every attribution method is registered ONCE, with its metadata.

``METHODS`` (key -> :class:`Method`) is what the UI, the CLI and the tests enumerate. A method is a
function ``compute(ctx, params) -> Computed`` decorated with :func:`register`; ``ctx`` is the per-call
:class:`~cnnviz_core.attribution.passes.PassContext` that owns the shared forward/backward passes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, Sequence, Union

import torch

from ..errors import ParameterError

if TYPE_CHECKING:  # pragma: no cover
    from .passes import PassContext

Family = Literal["cam", "gradient", "perturbation"]
#: Products of the shared main pass a method can ask for (see ``passes.PassContext``).
PassProduct = Literal["logits", "activation", "layer_grad", "input_grad", "guided", "deconvnet"]


@dataclass(frozen=True)
class Paper:
    authors: str
    year: int
    title: str
    link: str

    def cite(self) -> str:
        return f"{self.authors} ({self.year}), {self.title}, {self.link}"


@dataclass
class Computed:
    """What a method function returns: the raw map (CAM family and occlusion ``(H, W)``, gradient
    family ``(3, H, W)``, at input resolution), the layer-resolution map if any, and notes."""

    raw: torch.Tensor
    layer_map: Optional[torch.Tensor] = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """Metadata + implementation of one attribution method.

    ``needs``: user-facing requirements among ``"gradients"``, ``"gap_head"``, ``"extra_forwards"``,
    ``"relu"``. ``cost``: relative cost in units of one forward+backward at batch 1 (approximate,
    ``"C"`` = number of channels of the layer). ``passes``: products of the shared main pass used.
    ``params``: accepted keyword parameters and their defaults. ``long_running``: takes progress and
    cancel callbacks.
    """

    key: str
    display_name: str
    paper: Paper
    family: Family
    needs: tuple[str, ...]
    cost: str
    class_discriminative: bool
    passes: frozenset[str]
    compute: Callable[["PassContext", dict[str, Any]], Computed]
    params: dict[str, Any] = field(default_factory=dict)
    long_running: bool = False
    description: str = ""

    @property
    def uses_layer(self) -> bool:
        """Whether the map depends on the chosen layer (CAM family and guided Grad-CAM)."""
        return "activation" in self.passes or "layer_grad" in self.passes

    @property
    def output_shape(self) -> str:
        return "(3, H, W)" if self.family == "gradient" else "(H, W)"


METHODS: dict[str, Method] = {}


def register(
    key: str,
    *,
    display_name: str,
    paper: Paper,
    family: Family,
    needs: Sequence[str],
    cost: str,
    class_discriminative: bool,
    passes: Sequence[str],
    params: Optional[dict[str, Any]] = None,
    long_running: bool = False,
    description: str = "",
) -> Callable[[Callable], Callable]:
    """Decorator registering ``compute`` under ``key`` (each key exactly once)."""

    def decorate(compute: Callable) -> Callable:
        if key in METHODS:
            raise ValueError(f"attribution method {key!r} registered twice")
        METHODS[key] = Method(key, display_name, paper, family, tuple(needs), cost, class_discriminative,
                              frozenset(passes), compute, dict(params or {}), long_running,
                              description or (compute.__doc__ or "").strip().split("\n")[0])
        return compute

    return decorate


def resolve_methods(methods: Union[str, Sequence[str]]) -> list[Method]:
    """Validate method keys (one key, a comma list or a sequence) -> Methods, order kept, no duplicates."""
    keys = [k.strip() for k in methods.split(",")] if isinstance(methods, str) else [str(k).strip() for k in methods]
    keys = [k for k in dict.fromkeys(keys) if k]
    if not keys:
        raise ParameterError(f"no method given; choose from {', '.join(METHODS)}")
    unknown = [k for k in keys if k not in METHODS]
    if unknown:
        raise ParameterError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    return [METHODS[k] for k in keys]


def validate_params(params: dict[str, Any]) -> None:
    """Every keyword parameter must be a parameter of some registered method (a parameter of a
    method that is not requested is ignored, so the UI can pass one settings dict)."""
    allowed = sorted({p for m in METHODS.values() for p in m.params})
    for name in params:
        if name not in allowed:
            raise ParameterError(f"unknown parameter {name!r}; allowed: {', '.join(allowed)}")


def method_params(method: Method, params: dict[str, Any]) -> dict[str, Any]:
    """The method's defaults overridden by the given parameters it accepts."""
    return {k: params.get(k, v) for k, v in method.params.items()}
