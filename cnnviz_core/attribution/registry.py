"""The method registry: every attribution method is registered ONCE, with its metadata, in definition order.

``METHODS`` (key -> :class:`Method`) is what the UI, the CLI and the tests enumerate; its order is
the order in which the methods are defined (modules imported by :mod:`cnnviz_core.attribution`
in order: CAM family, perturbation CAMs, gradient family, occlusion), so no separate list has to
be kept in step. A method is a function ``compute(ctx, params) -> Computed`` (or a class with such
a ``compute``, see :class:`~.cam.WeightedCAM`) decorated with :func:`register`; ``ctx`` is the
per-call :class:`~cnnviz_core.attribution.passes.PassContext` that owns the shared passes, and
``params`` an instance of the method's own frozen parameter dataclass (``Method.params_type``).
"""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Optional, Sequence, Union

import torch

from ..errors import ParameterError
from ..typed_params import (NoParams, Paper, Params, boolean, check_flat_params, integer,  # noqa: F401
                            positive_int, resolve_keys, resolve_params)

if TYPE_CHECKING:  # pragma: no cover
    from .passes import PassContext

Family = Literal["cam", "gradient", "perturbation", "region"]
#: The families in the order the UI groups them, with a one-line description each. ``cam``: maps
#: from a layer's channels, ``(H, W)``; ``gradient``: per input pixel and channel, ``(3, H, W)``;
#: ``perturbation``: from forwards of masked/occluded inputs, ``(H, W)``; ``region``: attributions
#: of superpixels or regions, ``(H, W)``.
FAMILIES: dict[str, str] = {
    "cam": "CAM family: a layer's channels, weighted",
    "gradient": "Gradient family: per input pixel",
    "perturbation": "Perturbation: forwards of masked inputs",
    "region": "Regions: superpixels and segments",
}


class Product(str, enum.Enum):
    """Products of the shared main pass a method can ask for (``ctx.product(Product.LAYER_GRAD)``).

    A ``str`` enum: ``Product.LOGITS == "logits"`` and both hash alike, so dicts keyed by either work."""

    LOGITS = "logits"          # (N, K) logits (class targets) - always computed
    ACTIVATION = "activation"  # (N, C, h, w) output of the layer (the CAM layer, or the unit's layer)
    LAYER_GRAD = "layer_grad"  # (N, C, h, w) d score / d activation
    INPUT_GRAD = "input_grad"  # (N, 3, H, W) d score / d input, plain ReLU rule (saliency)
    GUIDED = "guided"          # (N, 3, H, W) guided-backprop rule
    DECONVNET = "deconvnet"    # (N, 3, H, W) deconvnet rule

    __hash__ = str.__hash__

    def __str__(self) -> str:
        return self.value


#: Kept for callers of the old name.
PassProduct = Product


@dataclass
class Computed:
    """What a method function returns: the raw map (CAM family and occlusion ``(H, W)``, gradient
    family ``(3, H, W)``, at input resolution), the layer-resolution map if any, and notes."""

    raw: torch.Tensor
    layer_map: Optional[torch.Tensor] = None
    info: dict[str, Any] = field(default_factory=dict)


# ---- typed parameters (the shared base and validators: :mod:`cnnviz_core.typed_params`) --------
@dataclass(frozen=True)
class CAMParams(Params):
    """Options every CAM-family map accepts (pytorch-grad-cam's names): ``aug_smooth`` averages the
    map over test-time augmentations (horizontal flip x scales), ``eigen_smooth`` replaces
    ``sum_k w_k A_k`` by the first principal component of the weighted activations ``w_k A_k``.
    A CAM method's own parameter dataclass subclasses this one."""

    aug_smooth: bool = False
    eigen_smooth: bool = False

    def __post_init__(self) -> None:
        for name in ("aug_smooth", "eigen_smooth"):
            self._set(name, boolean(name, getattr(self, name)))


@dataclass(frozen=True)
class ScoreCAMParams(CAMParams):
    """``batch_size`` masked images per forward; ``channels``: only the k most active channels
    (an approximation, labelled in the result); ``None`` = all channels (exact)."""

    batch_size: int = 16
    channels: Optional[int] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("batch_size", positive_int("batch_size", self.batch_size))
        if self.channels is not None:
            self._set("channels", positive_int("channels", self.channels))


@dataclass(frozen=True)
class AblationCAMParams(CAMParams):
    """``batch_size`` ablated copies of the layer output per tail forward."""

    batch_size: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("batch_size", positive_int("batch_size", self.batch_size))


@dataclass(frozen=True)
class SmoothGradParams(Params):
    """``samples`` noisy copies, noise std ``noise * (max(x) - min(x))``, ``batch_size`` copies per
    forward, ``seed`` of the noise."""

    samples: int = 50
    noise: float = 0.15
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        self._set("samples", positive_int("samples", self.samples))
        self._set("batch_size", positive_int("batch_size", self.batch_size))
        noise = float(self.noise)
        if not noise >= 0:
            raise ParameterError(f"smoothgrad needs noise >= 0, got {self.noise!r}")
        self._set("noise", noise)
        self._set("seed", int(self.seed))


Baseline = Literal["black", "zero"]


@dataclass(frozen=True)
class IntegratedGradientsParams(Params):
    """``steps`` of the Riemann sum, ``baseline`` ``"black"`` or ``"zero"``, ``batch_size`` steps per forward."""

    steps: int = 50
    baseline: Baseline = "black"
    batch_size: int = 16

    def __post_init__(self) -> None:
        self._set("steps", positive_int("steps", self.steps))
        self._set("batch_size", positive_int("batch_size", self.batch_size))
        if self.baseline not in ("black", "zero"):
            raise ParameterError(f"unknown baseline {self.baseline!r}; choose black or zero")


@dataclass(frozen=True)
class OcclusionParams(Params):
    """Grey square of ``patch`` px slid with ``stride`` (defaults from the input size), ``batch_size``
    occluded images per forward."""

    patch: Optional[int] = None
    stride: Optional[int] = None
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.patch is not None:
            self._set("patch", positive_int("patch", self.patch))
        if self.stride is not None:
            self._set("stride", positive_int("stride", self.stride))
        self._set("batch_size", positive_int("batch_size", self.batch_size))


# ---- methods -----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Method:
    """Metadata + implementation of one attribution method (keyword-only fields).

    ``needs``: user-facing requirements among ``"gradients"``, ``"gap_head"``, ``"extra_forwards"``,
    ``"relu"``. ``cost``: relative cost in units of one forward+backward at batch 1 (approximate,
    ``"C"`` = number of channels of the layer). ``passes``: products of the shared main pass used.
    ``params_type``: the method's parameter dataclass (``params``: its defaults as a dict).
    ``long_running``: takes progress and cancel callbacks. ``unit_targets``: accepts channel and
    neuron targets (:mod:`.targets`) as well as classes. ``reference``: the library our parity test
    compares the method with (the README's method table lists it).
    """

    key: str
    display_name: str
    paper: Paper
    family: Family
    needs: tuple[str, ...]
    cost: str
    class_discriminative: bool
    passes: frozenset[Product]
    compute: Callable[["PassContext", Any], Computed]
    params_type: type = NoParams
    long_running: bool = False
    unit_targets: bool = False
    description: str = ""
    reference: str = ""

    @property
    def params(self) -> dict[str, Any]:
        """Accepted keyword parameters and their defaults."""
        return {f.name: f.default for f in dataclasses.fields(self.params_type)}

    @property
    def uses_layer(self) -> bool:
        """Whether the map depends on the chosen layer (CAM family and guided Grad-CAM)."""
        return Product.ACTIVATION in self.passes or Product.LAYER_GRAD in self.passes

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
    passes: Sequence[Union[Product, str]],
    params: type = NoParams,
    long_running: bool = False,
    unit_targets: bool = False,
    description: str = "",
    reference: str = "",
) -> Callable[[Any], Any]:
    """Decorator registering a method under ``key`` (each key exactly once, in definition order).

    Decorates a function ``compute(ctx, params)`` or a class whose instances have ``compute``."""

    def decorate(obj: Any) -> Any:
        if key in METHODS:
            raise ValueError(f"attribution method {key!r} registered twice")
        compute = obj().compute if isinstance(obj, type) else obj
        METHODS[key] = Method(
            key=key, display_name=display_name, paper=paper, family=family, needs=tuple(needs), cost=cost,
            class_discriminative=class_discriminative, passes=frozenset(Product(p) for p in passes),
            compute=compute, params_type=params, long_running=long_running, unit_targets=unit_targets,
            description=description or (obj.__doc__ or "").strip().split("\n")[0], reference=reference)
        return obj

    return decorate


def resolve_methods(methods: Union[str, Sequence[str]]) -> list[Method]:
    """Validate method keys (one key, a comma list or a sequence) -> Methods, order kept, no duplicates."""
    return resolve_keys(methods, METHODS, "method")


def validate_params(params: Mapping[str, Any], options: Optional[Mapping[str, Any]] = None) -> None:
    """Flat keyword parameters must each be a parameter of some registered method (one settings
    dict for a whole comparison: a parameter of a method not requested is ignored). ``options``
    (per-method parameters) must name registered methods."""
    check_flat_params(params, list(METHODS.values()), "parameter")
    for key in options or {}:
        if key not in METHODS:
            raise ParameterError(f"parameters given for unknown method {key!r}; choose from {', '.join(METHODS)}")


def method_params(method: Method, params: Mapping[str, Any], options: Optional[Mapping[str, Any]] = None) -> Params:
    """The method's typed parameters: its defaults, overridden by the flat ``params`` it accepts,
    overridden by ``options[method.key]`` (an instance of ``method.params_type`` or a dict of its fields).

    Flat parameters apply to every requested method that has a field of that name (``batch_size=8``
    sets all five batch sizes); to set one method's only, pass ``options={"scorecam":
    ScoreCAMParams(batch_size=8)}``."""
    return resolve_params(method.key, method.params_type, params, options)

