"""Captum's gradient methods: Input x Gradient, GradientSHAP, DeepLift, DeepLiftSHAP, NoiseTunnel variants.

Every map is ``(3, H, W)`` float32, the raw attribution w.r.t. the *normalized* input tensor (never
rescaled), of the target's score: the class logit, or a unit's activation (:mod:`.targets`) read
from a forward truncated after the unit's layer.

* ``input_x_gradient`` reads the shared pass's input gradient (free next to saliency).
* ``gradient_shap`` and the noise tunnels (``smoothgrad_sq``, ``vargrad``) run their own batched
  forward/backward passes; all random draws come from one ``torch.Generator`` seeded by ``seed``.
* ``deeplift`` and ``deeplift_shap`` forward ``cat([inputs, references])`` once per batch under
  :func:`~.deeplift_rules.rescale_rule` (a per-call backward rule, nothing registered on the model).

Baselines (``baseline``, as Integrated Gradients'): ``"black"`` = the black image, normalized;
``"zero"`` = the all-zero normalized tensor (the dataset's mean colour, Captum's default).
Reference distributions (``distribution``): ``"uniform"`` = ``samples`` images of uniform random RGB
in [0, 1], normalized; ``"black_white"`` = the black and the white image; ``"black"`` / ``"zero"`` = one
image as above.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Optional

import torch

from ..errors import MethodUnavailableError, ParameterError
from ..hooks import relu_backward_rule
from ..progress import check_cancel, report
from .deeplift_rules import RescaleState, plain_nonlinearities, rescale_rule
from .passes import PassContext
from .registry import METHODS, Computed, NoParams, Paper, Params, Product, integer, positive_int, method_params, register

P = Product
Baseline = Literal["black", "zero"]
Distribution = Literal["uniform", "black_white", "black", "zero"]
BASELINES: tuple[str, ...] = ("black", "zero")
DISTRIBUTIONS: tuple[str, ...] = ("uniform", "black_white", "black", "zero")


# ---- parameters ---------------------------------------------------------------------------------
def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ParameterError(f"unknown {name} {value!r}; choose {', '.join(allowed)}")
    return str(value)


def _noise(value: Any) -> float:
    try:
        noise = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"noise must be a number >= 0, got {value!r}") from None
    if not noise >= 0:
        raise ParameterError(f"noise must be a number >= 0, got {value!r}")
    return noise


def _seed(value: Any) -> int:
    return integer("seed", value)


@dataclass(frozen=True)
class DeepLiftParams(Params):
    """``baseline``: the reference input, ``"black"`` or ``"zero"`` (as Integrated Gradients')."""

    baseline: Baseline = "black"

    def __post_init__(self) -> None:
        self._set("baseline", _choice("baseline", self.baseline, BASELINES))


@dataclass(frozen=True)
class GradientShapParams(Params):
    """``samples`` draws of (reference, alpha, noise); ``noise``: std of the Gaussian noise added to
    the input, as a fraction of ``max(x) - min(x)`` (SmoothGrad's convention; 0 = none, Captum's
    default); ``distribution`` of the references; ``batch_size`` draws per forward; ``seed``."""

    samples: int = 25
    noise: float = 0.0
    distribution: Distribution = "uniform"
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        self._set("samples", positive_int("samples", self.samples))
        self._set("batch_size", positive_int("batch_size", self.batch_size))
        self._set("noise", _noise(self.noise))
        self._set("distribution", _choice("distribution", self.distribution, DISTRIBUTIONS))
        self._set("seed", _seed(self.seed))


@dataclass(frozen=True)
class DeepLiftShapParams(Params):
    """``distribution`` of the references (``"uniform"``: ``samples`` of them); ``batch_size``
    references per forward (each forward holds twice as many images); ``seed`` of the draws."""

    samples: int = 16
    distribution: Distribution = "uniform"
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        self._set("samples", positive_int("samples", self.samples))
        self._set("batch_size", positive_int("batch_size", self.batch_size))
        self._set("distribution", _choice("distribution", self.distribution, DISTRIBUTIONS))
        self._set("seed", _seed(self.seed))


def _has_seed(params_type: type) -> bool:
    return any(f == "seed" for f in getattr(params_type, "__dataclass_fields__", {}))


def noise_tunnel_bases() -> tuple[str, ...]:
    """The methods a noise tunnel can wrap: gradient-family maps that are a function of the input
    alone (no CAM layer, no random draws of their own)."""
    return tuple(k for k, m in METHODS.items()
                 if m.family == "gradient" and not m.uses_layer and not _has_seed(m.params_type))


@dataclass(frozen=True)
class NoiseTunnelParams(Params):
    """``base``: the gradient method wrapped (default ``"saliency"``; see :func:`noise_tunnel_bases`).
    ``samples`` noisy copies of std ``noise * (max(x) - min(x))``, ``batch_size`` copies per
    forward, ``seed`` of the noise (SmoothGrad's parameters: same seed and batch size, same noise).
    ``steps``, ``baseline`` and ``batch_size`` go to a base that has them (Integrated Gradients,
    DeepLift) and accepts the value; any other parameter of the base keeps its default."""

    base: str = "saliency"
    samples: int = 50
    noise: float = 0.15
    batch_size: int = 16
    seed: int = 0
    steps: int = 50
    baseline: Baseline = "black"

    def __post_init__(self) -> None:
        allowed = noise_tunnel_bases()
        if self.base not in allowed:
            raise ParameterError(f"a noise tunnel cannot wrap {self.base!r}; base must be one of {', '.join(allowed)}")
        self._set("samples", positive_int("samples", self.samples))
        self._set("batch_size", positive_int("batch_size", self.batch_size))
        self._set("steps", positive_int("steps", self.steps))
        self._set("noise", _noise(self.noise))
        self._set("seed", _seed(self.seed))
        self._set("baseline", _choice("baseline", self.baseline, BASELINES))


# ---- shared pieces ------------------------------------------------------------------------------
def baseline_image(ctx: PassContext, kind: str) -> torch.Tensor:
    """``(1, 3, H, W)`` the reference input ``"black"`` (normalized black) or ``"zero"``."""
    return ctx.handle.normalize(torch.zeros_like(ctx.x)) if kind == "black" else torch.zeros_like(ctx.x)


def reference_set(ctx: PassContext, distribution: str, count: int, gen: torch.Generator) -> torch.Tensor:
    """``(R, 3, H, W)`` the references of ``distribution`` (``"uniform"``: ``count`` images drawn from ``gen``)."""
    shape = (3, *ctx.input_size)
    if distribution == "uniform":
        rgb = torch.rand((count, *shape), generator=gen, device=ctx.x.device, dtype=ctx.x.dtype)
    elif distribution == "black_white":
        rgb = torch.stack([torch.zeros(shape, device=ctx.x.device), torch.ones(shape, device=ctx.x.device)])
    elif distribution == "black":
        rgb = torch.zeros((1, *shape), device=ctx.x.device)
    else:
        return torch.zeros((1, *shape), device=ctx.x.device, dtype=ctx.x.dtype)
    return ctx.handle.normalize(rgb.to(ctx.x.dtype))


def _resolve(ctx: PassContext) -> None:
    """Fix the target before any batched pass (top-1 class / the neuron's position on the clean image)."""
    if ctx.is_unit:
        ctx.resolved_unit()
    else:
        ctx.resolved_target()


def _scores(ctx: PassContext, batch: torch.Tensor) -> torch.Tensor:
    """``(N,)`` the target's score per image of ``batch`` (call under the lock)."""
    if ctx.is_unit:
        return ctx.unit_scores(batch)
    return ctx.model(batch)[:, ctx.resolved_target()]


def input_grads(ctx: PassContext, xb: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` d score / d input for each image of ``xb`` (one forward + backward)."""
    with ctx.handle.lock, torch.enable_grad():
        xin = xb.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(_scores(ctx, xin).sum(), xin)
    return grad


def _relu_rule_grads(ctx: PassContext, xb: torch.Tensor, rule: str) -> torch.Tensor:
    name = "guided backprop" if rule == "guided" else rule
    if not ctx.handle.hookable:
        raise MethodUnavailableError(f"{name} cannot run on a TorchScript program: its ReLUs run outside Python")
    with ctx.handle.lock, torch.enable_grad(), relu_backward_rule() as state:
        xin = xb.detach().requires_grad_(True)
        score = _scores(ctx, xin).sum()
        state.rule = rule  # type: ignore[assignment]
        (grad,) = torch.autograd.grad(score, xin)
    if not state.calls and not (ctx.is_unit and not ctx.non_relu_activations()):
        raise MethodUnavailableError(f"{name} needs ReLU activations; {ctx.handle.name!r} has none "
                                     f"(activations: {', '.join(ctx.non_relu_activations()) or 'unknown'})")
    return grad


@dataclass
class Multipliers:
    """DeepLIFT multipliers of one batch of (input, reference) pairs and the scores of both."""

    grad: torch.Tensor         # (B, 3, H, W) d score / d input under the rescale rule
    scores: torch.Tensor       # (B,) the target's score of each input
    ref_scores: torch.Tensor   # (B,) ... of each reference
    state: RescaleState


def deeplift_multipliers(ctx: PassContext, xb: torch.Tensor, refs: torch.Tensor) -> Multipliers:
    """One forward of ``cat([xb, refs])`` under :func:`~.deeplift_rules.rescale_rule`, one backward."""
    if not ctx.handle.hookable:
        raise MethodUnavailableError("DeepLift cannot run on a TorchScript program: its nonlinearities run outside "
                                     "Python and cannot take the rescale rule; load a state_dict or a .pt2")
    b = xb.shape[0]
    with ctx.handle.lock, torch.enable_grad(), rescale_rule() as state:
        xin = xb.detach().requires_grad_(True)
        scores = _scores(ctx, torch.cat([xin, refs.detach().expand_as(xin)]))
        (grad,) = torch.autograd.grad(scores[:b].sum(), xin)
    scores = scores.detach()
    return Multipliers(grad, scores[:b], scores[b:], state)


def _rule_info(ctx: PassContext, state: RescaleState) -> dict:
    info: dict = {"rescaled": dict(state.calls)}
    plain = plain_nonlinearities(ctx.model)
    if state.products:
        plain.append(f"{state.products} products of two signals")
    if plain:
        info["warning"] = (f"{', '.join(plain)} back-propagate with the plain gradient (no DeepLIFT rule): "
                           "the map sums to the score difference only approximately")
    return info


# ---- methods ------------------------------------------------------------------------------------
_SHRIKUMAR_2016 = Paper("Shrikumar et al.", 2016, "Not Just a Black Box: Learning Important Features Through "
                        "Propagating Activation Differences", "https://arxiv.org/abs/1605.01713")
_DEEPLIFT_PAPER = Paper("Shrikumar, Greenside & Kundaje", 2017, "Learning Important Features Through "
                        "Propagating Activation Differences", "https://arxiv.org/abs/1704.02685")
_SHAP_PAPER = Paper("Lundberg & Lee", 2017, "A Unified Approach to Interpreting Model Predictions",
                    "https://arxiv.org/abs/1705.07874")


@register("input_x_gradient", display_name="Input × Gradient", paper=_SHRIKUMAR_2016, family="gradient",
          passes=(P.INPUT_GRAD,), needs=("gradients",), cost="1 (shared pass)", class_discriminative=True,
          unit_targets=True)
def input_x_gradient(ctx: PassContext, p: NoParams) -> Computed:
    """Input x Gradient (Shrikumar et al. 2016; Captum ``InputXGradient``): ``x * dy/dx``, the
    normalized input times the shared pass's saliency gradient."""
    return Computed(raw=ctx.x[0] * ctx.product(P.INPUT_GRAD)[0])


def gradient_shap_draws(ctx: PassContext, p: GradientShapParams) -> tuple[torch.Tensor, ...]:
    """The random draws of GradientSHAP, in order, from one generator seeded by ``p.seed``:
    ``references`` (R, 3, H, W), per sample the reference ``index`` (S,), ``alpha`` (S,) ~ U(0, 1)
    and the input ``noise`` (S, 3, H, W) (already scaled by ``noise * (max(x) - min(x))``)."""
    gen = torch.Generator(device=ctx.x.device).manual_seed(p.seed)
    dev, dtype = ctx.x.device, ctx.x.dtype
    refs = reference_set(ctx, p.distribution, p.samples, gen)
    if p.distribution == "uniform":
        index = torch.arange(p.samples, device=dev)  # a fresh random image per sample
    else:
        index = torch.randint(refs.shape[0], (p.samples,), generator=gen, device=dev)
    alpha = torch.rand(p.samples, generator=gen, device=dev, dtype=dtype)
    sigma = p.noise * float(ctx.x.max() - ctx.x.min())
    noise = sigma * torch.randn((p.samples, *ctx.x.shape[1:]), generator=gen, device=dev, dtype=dtype)
    return refs, index, alpha, noise


@register("gradient_shap", display_name="GradientSHAP", paper=_SHAP_PAPER, family="gradient",
          passes=(P.LOGITS,), needs=("gradients", "extra_forwards"), cost="samples", class_discriminative=True,
          params=GradientShapParams, long_running=True, unit_targets=True)
def gradient_shap(ctx: PassContext, p: GradientShapParams) -> Computed:
    """GradientSHAP (Lundberg & Lee 2017, expected gradients; Captum ``GradientShap``): the mean over
    ``samples`` draws of ``(x_i - r_i) * dy/dx (r_i + alpha_i (x_i - r_i))`` with ``x_i = x + noise_i``,
    the reference ``r_i`` drawn from ``distribution`` and ``alpha_i ~ U(0, 1)``. Seeded by ``seed``."""
    _resolve(ctx)
    refs, index, alpha, noise = gradient_shap_draws(ctx, p)
    acc = torch.zeros_like(ctx.x[0])
    for start in range(0, p.samples, p.batch_size):
        check_cancel(ctx.cancel)
        stop = min(p.samples, start + p.batch_size)
        xi = ctx.x + noise[start:stop]
        delta = xi - refs[index[start:stop]]
        points = refs[index[start:stop]] + alpha[start:stop].view(-1, 1, 1, 1) * delta
        acc += (delta * input_grads(ctx, points)).sum(dim=0)
        report(ctx.progress, stop, p.samples, "GradientSHAP samples")
    return Computed(raw=acc / p.samples, info={"samples": p.samples, "distribution": p.distribution,
                                              "references": int(refs.shape[0])})


@register("deeplift", display_name="DeepLift (rescale)", paper=_DEEPLIFT_PAPER, family="gradient",
          passes=(P.LOGITS,), needs=("gradients",), cost="1 forward+backward at batch 2",
          class_discriminative=True, params=DeepLiftParams, unit_targets=True)
def deeplift(ctx: PassContext, p: DeepLiftParams) -> Computed:
    """DeepLift with the rescale rule (Shrikumar et al. 2017; Captum ``DeepLift``): ``(x - x') * m``,
    ``m`` the multipliers of :mod:`.deeplift_rules`. On networks of linear layers, elementwise
    nonlinearities and max pools the map sums to ``y(x) - y(x')`` (``info["summation_delta"]`` =
    sum - difference, ~0); products of two signals (squeeze-excitation) back-propagate their gradient
    and break this by a few percent. Baseline ``x'``: ``baseline``. Departs from Captum 0.9.0 where
    Captum departs from the paper (adjacent nonlinear modules, reused modules, overlapping max pools,
    functional and hard-swish activations; see :mod:`.deeplift_rules`)."""
    _resolve(ctx)
    ref = baseline_image(ctx, p.baseline)
    mult = deeplift_multipliers(ctx, ctx.x, ref)
    raw = (ctx.x - ref)[0] * mult.grad[0]
    info = {"baseline": p.baseline, **_rule_info(ctx, mult.state),
            "summation_delta": float(raw.sum() - (mult.scores[0] - mult.ref_scores[0]))}
    return Computed(raw=raw, info=info)


@register("deeplift_shap", display_name="DeepLiftSHAP", paper=_SHAP_PAPER, family="gradient",
          passes=(P.LOGITS,), needs=("gradients", "extra_forwards"), cost="samples (at batch 2)",
          class_discriminative=True, params=DeepLiftShapParams, long_running=True, unit_targets=True)
def deeplift_shap(ctx: PassContext, p: DeepLiftShapParams) -> Computed:
    """DeepLiftSHAP (Deep SHAP of Lundberg & Lee 2017; Captum ``DeepLiftShap``): DeepLift (rescale) of
    ``x`` against each reference of ``distribution``, averaged over the references."""
    _resolve(ctx)
    gen = torch.Generator(device=ctx.x.device).manual_seed(p.seed)
    refs = reference_set(ctx, p.distribution, p.samples, gen)
    total = refs.shape[0]
    acc = torch.zeros_like(ctx.x[0])
    state = RescaleState()
    for start in range(0, total, p.batch_size):
        check_cancel(ctx.cancel)
        chunk = refs[start:start + p.batch_size]
        mult = deeplift_multipliers(ctx, ctx.x.expand_as(chunk), chunk)
        acc += ((ctx.x - chunk) * mult.grad).sum(dim=0)
        state = mult.state  # the counts of one forward
        report(ctx.progress, min(total, start + p.batch_size), total, "DeepLiftSHAP references")
    return Computed(raw=acc / total, info={"distribution": p.distribution, "references": int(total),
                                          **_rule_info(ctx, state)})


# ---- noise tunnels ------------------------------------------------------------------------------
def _batched_base(key: str) -> Optional[Callable[[PassContext, torch.Tensor, NoiseTunnelParams], torch.Tensor]]:
    """Batched maps of a base method for a batch of inputs (None: run the method per input)."""
    def saliency(ctx: PassContext, xb: torch.Tensor, p: NoiseTunnelParams) -> torch.Tensor:
        return input_grads(ctx, xb)

    def ixg(ctx: PassContext, xb: torch.Tensor, p: NoiseTunnelParams) -> torch.Tensor:
        return xb * input_grads(ctx, xb)

    def guided(ctx: PassContext, xb: torch.Tensor, p: NoiseTunnelParams) -> torch.Tensor:
        return _relu_rule_grads(ctx, xb, "guided")

    def deconv(ctx: PassContext, xb: torch.Tensor, p: NoiseTunnelParams) -> torch.Tensor:
        return _relu_rule_grads(ctx, xb, "deconvnet")

    def dl(ctx: PassContext, xb: torch.Tensor, p: NoiseTunnelParams) -> torch.Tensor:
        ref = baseline_image(ctx, p.baseline)
        return (xb - ref) * deeplift_multipliers(ctx, xb, ref).grad

    return {"saliency": saliency, "input_x_gradient": ixg, "guided_backprop": guided, "deconvnet": deconv,
            "deeplift": dl}.get(key)


def tunnel_noise(x: torch.Tensor, p: NoiseTunnelParams) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(start, stop, x + noise)`` batches of the noisy copies, drawn as SmoothGrad draws them (one
    generator seeded by ``seed``, ``batch_size`` copies at a time), so equal parameters give equal noise."""
    sigma = p.noise * float(x.max() - x.min())
    gen = torch.Generator(device=x.device).manual_seed(p.seed)
    for start in range(0, p.samples, p.batch_size):
        stop = min(p.samples, start + p.batch_size)
        eps = torch.randn((stop - start, *x.shape[1:]), generator=gen, device=x.device)
        yield start, stop, x + sigma * eps


def _per_input(ctx: PassContext, key: str, xb: torch.Tensor, p: NoiseTunnelParams) -> torch.Tensor:
    """The base method's map of each input of ``xb``, each in its own request context."""
    method = METHODS[key]
    values: dict[str, Any] = {}
    for name, value in (("steps", p.steps), ("baseline", p.baseline), ("batch_size", p.batch_size)):
        try:  # a value the base refuses (its own meaning of the name) leaves its default
            method_params(method, {**values, name: value})
            values[name] = value
        except ParameterError:
            pass
    params = method_params(method, values)
    target = ctx.resolved_unit() if ctx.is_unit else ctx.resolved_target()
    maps = []
    for i in range(xb.shape[0]):
        check_cancel(ctx.cancel)
        sub = PassContext(ctx.handle, xb[i:i + 1], ctx.layer, target, cancel=ctx.cancel)
        sub.plan(method.passes)
        maps.append(method.compute(sub, params).raw)
    return torch.stack(maps)


#: Per-request sums of a noise tunnel, so that SmoothGrad² and VarGrad requested together with the
#: same parameters share one set of passes (keyed by the request's context, freed with it).
_SUMS: "weakref.WeakKeyDictionary[PassContext, dict]" = weakref.WeakKeyDictionary()
_SUMS_LOCK = threading.Lock()


def _tunnel_sums(ctx: PassContext, p: NoiseTunnelParams, label: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(sum of maps, sum of squared maps, reused)`` of ``base`` over the noisy copies."""
    key = repr(p)
    with _SUMS_LOCK:
        done = _SUMS.get(ctx, {}).get(key)
    if done is not None:
        return done[0], done[1], True
    base = METHODS[p.base]
    if ctx.is_unit and not base.unit_targets:
        raise MethodUnavailableError(f"{p.base} explains classes, not the unit {ctx.unit.describe()}; "
                                     "choose a base that takes unit targets")
    _resolve(ctx)
    batched = _batched_base(p.base)
    total = torch.zeros_like(ctx.x[0])
    squares = torch.zeros_like(ctx.x[0])
    for start, stop, xb in tunnel_noise(ctx.x, p):
        check_cancel(ctx.cancel)
        maps = batched(ctx, xb, p) if batched is not None else _per_input(ctx, p.base, xb, p)
        total += maps.sum(dim=0)
        squares += (maps * maps).sum(dim=0)
        report(ctx.progress, stop, p.samples, label)
    with _SUMS_LOCK:
        _SUMS.setdefault(ctx, {})[key] = (total, squares)
    return total, squares, False


def _noise_tunnel(ctx: PassContext, p: NoiseTunnelParams, squared_only: bool, label: str) -> Computed:
    total, squares, reused = _tunnel_sums(ctx, p, label)
    mean_sq = squares / p.samples
    raw = mean_sq if squared_only else mean_sq - (total / p.samples) ** 2
    info = {"base": p.base, "samples": p.samples, "sigma": p.noise * float(ctx.x.max() - ctx.x.min())}
    if reused:
        info["shared"] = "reuses the noisy maps computed for the other noise tunnel of this request"
    return Computed(raw=raw, info=info)


@register("smoothgrad_sq", display_name="SmoothGrad²",
          paper=Paper("Hooker et al.", 2019, "A Benchmark for Interpretability Methods in Deep Neural Networks",
                      "https://arxiv.org/abs/1806.10758"),
          family="gradient", passes=(P.LOGITS,), needs=("gradients", "extra_forwards"), cost="samples x base",
          class_discriminative=True, params=NoiseTunnelParams, long_running=True, unit_targets=True)
def smoothgrad_sq(ctx: PassContext, p: NoiseTunnelParams) -> Computed:
    """SmoothGrad-squared (Hooker et al. 2019; Captum ``NoiseTunnel(nt_type="smoothgrad_sq")``): the
    mean of the *squared* maps of ``base`` over ``samples`` noisy copies ``x + N(0, sigma^2)``,
    ``sigma = noise * (max(x) - min(x))``. Per channel, >= 0."""
    return _noise_tunnel(ctx, p, True, "SmoothGrad² samples")


@register("vargrad", display_name="VarGrad",
          paper=Paper("Adebayo et al.", 2018, "Local Explanation Methods for Deep Neural Networks Lack "
                      "Sensitivity to Parameter Values", "https://arxiv.org/abs/1810.03307"),
          family="gradient", passes=(P.LOGITS,), needs=("gradients", "extra_forwards"), cost="samples x base",
          class_discriminative=True, params=NoiseTunnelParams, long_running=True, unit_targets=True)
def vargrad(ctx: PassContext, p: NoiseTunnelParams) -> Computed:
    """VarGrad (Adebayo et al. 2018; Captum ``NoiseTunnel(nt_type="vargrad")``): the variance
    (``E[m^2] - E[m]^2``, population) of the maps of ``base`` over ``samples`` noisy copies of the
    input, noise as SmoothGrad's. Per channel, >= 0 up to rounding."""
    return _noise_tunnel(ctx, p, False, "VarGrad samples")
