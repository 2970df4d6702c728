"""PAIR saliency's path methods: Blur IG, Guided IG and XRAI, on batched ``torch.autograd.grad``.

* :func:`blur_ig` (Xu et al. 2020) integrates the gradient along a path of ever stronger Gaussian
  blurs of the image instead of a straight line from a baseline: no baseline to choose.
* :func:`guided_ig` (Kapishnikov et al. 2021) walks from the baseline to the image along an
  adaptive path that first moves the features whose gradient is smallest, which removes the noise
  that straight-line IG picks up where the model saturates.
* :func:`xrai` (Kapishnikov et al. 2019) ranks image regions by their Integrated Gradients
  attribution density: multi-scale Felzenszwalb segments are added greedily, densest first.

Blur IG and Guided IG are in the gradient family: ``(3, H, W)`` float32, the raw attribution w.r.t.
the *normalized* input tensor (the blur is applied to that tensor, as PAIR's code does to whatever
array it is given). XRAI is in the region family: ``(H, W)``, each pixel the attribution density of
the region that first covered it (the API min-max scales it after a ReLU, like every (H, W) map).

All three take a class or a unit target (the unit's activation from a truncated forward), run their
own forwards/backwards under ``ctx.handle.lock`` batch by batch (Guided IG one gradient per step:
each step depends on the last), report progress and honour the cancel token between batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError
from ..progress import check_cancel, report
from .passes import PassContext
from .registry import Computed, Paper, Params, Product, positive_int, register

P = Product
PathBaseline = Literal["black", "zero"]


def _positive_float(name: str, value: object, *, allow_zero: bool = False) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ParameterError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


# ---- parameters ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlurIGParams(Params):
    """``steps`` blur levels between the image and the blur of std ``max_sigma`` px, the blur's
    derivative by a finite difference of ``grad_step`` px of std, ``batch_size`` blurred images per
    forward (PAIR's defaults: 100 steps, max_sigma 50, grad_step 0.01)."""

    steps: int = 100
    max_sigma: float = 50.0
    grad_step: float = 0.01
    batch_size: int = 16

    def __post_init__(self) -> None:
        self._set("steps", positive_int("steps", self.steps))
        self._set("batch_size", positive_int("batch_size", self.batch_size))
        self._set("max_sigma", _positive_float("max_sigma", self.max_sigma))
        self._set("grad_step", _positive_float("grad_step", self.grad_step))


@dataclass(frozen=True)
class GuidedIGParams(Params):
    """``steps`` of the path, ``fraction`` of the features moved per sub-step (those of smallest
    absolute gradient), ``max_dist``: how far (relative L1) the path may stray from the straight
    line, ``baseline`` ``"black"`` or ``"zero"`` (paper / PAIR defaults: 200, 0.25, 0.02)."""

    steps: int = 200
    fraction: float = 0.25
    max_dist: float = 0.02
    baseline: PathBaseline = "black"

    def __post_init__(self) -> None:
        self._set("steps", positive_int("steps", self.steps))
        fraction = _positive_float("fraction", self.fraction)
        if fraction > 1:
            raise ParameterError(f"fraction must be in (0, 1], got {self.fraction!r}")
        self._set("fraction", fraction)
        max_dist = _positive_float("max_dist", self.max_dist, allow_zero=True)
        if max_dist > 1:
            raise ParameterError(f"max_dist must be in [0, 1], got {self.max_dist!r}")
        self._set("max_dist", max_dist)
        if self.baseline not in ("black", "zero"):
            raise ParameterError(f"unknown baseline {self.baseline!r}; choose black or zero")


@dataclass(frozen=True)
class XRAIParams(Params):
    """``steps`` of Integrated Gradients per baseline (black and white), ``batch_size`` path points
    per forward (PAIR's default: 100 steps)."""

    steps: int = 100
    batch_size: int = 16

    def __post_init__(self) -> None:
        self._set("steps", positive_int("steps", self.steps))
        self._set("batch_size", positive_int("batch_size", self.batch_size))


# ---- gradients ----------------------------------------------------------------------------------
def _gradient_fn(ctx: PassContext) -> Callable[[torch.Tensor], torch.Tensor]:
    """``grad(xb) -> (B, 3, H, W)``: per-image gradient of the target's score (class logit, or the
    unit's activation) for a batch, under the model lock. Images are independent in eval mode, so
    one backward of the summed scores gives every image its own gradient."""
    target = None if ctx.is_unit else ctx.resolved_target()
    if ctx.is_unit:
        ctx.resolved_unit()  # the neuron's position comes from the clean image, for every path point

    def grad(xb: torch.Tensor) -> torch.Tensor:
        xb = xb.detach().to(ctx.x.dtype).requires_grad_(True)
        with ctx.handle.lock, torch.enable_grad():
            scores = ctx.unit_scores(xb) if target is None else ctx.model(xb)[:, target]
            (g,) = torch.autograd.grad(scores.sum(), xb)
        return g

    return grad


# ---- Blur IG ------------------------------------------------------------------------------------
def gaussian_blur(x: torch.Tensor, sigmas: torch.Tensor, truncate: float = 4.0) -> torch.Tensor:
    """``(B, C, H, W)``: ``x`` (``(1, C, H, W)``) blurred by a Gaussian of std ``sigmas[b]`` px
    along H and W, truncated at ``truncate`` std (radius ``int(truncate * sigma + 0.5)``), with
    zero padding outside the image - scipy's ``gaussian_filter(mode="constant")``, the filter of
    Xu et al.'s code. ``sigma == 0`` leaves the image unchanged."""
    sig = [float(s) for s in sigmas]
    radii = [int(truncate * s + 0.5) if s > 0 else 0 for s in sig]
    r = max(radii)
    c = x.shape[1]
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    kernels = torch.zeros(len(sig), 2 * r + 1, dtype=x.dtype, device=x.device)
    for i, (s, ri) in enumerate(zip(sig, radii)):
        if ri == 0:
            kernels[i, r] = 1.0
        else:
            w = torch.exp(-0.5 * (t / s) ** 2) * (t.abs() <= ri)
            kernels[i] = w / w.sum()
    k = kernels.repeat_interleave(c, dim=0)  # (B*C, K): one kernel per (sigma, channel) group
    h = x.expand(len(sig), -1, -1, -1).reshape(1, len(sig) * c, *x.shape[-2:])
    h = F.conv2d(F.pad(h, (0, 0, r, r)), k[:, None, :, None], groups=len(sig) * c)
    h = F.conv2d(F.pad(h, (r, r, 0, 0)), k[:, None, None, :], groups=len(sig) * c)
    return h.reshape(len(sig), c, *x.shape[-2:])


_BLUR_PAPER = Paper("Xu, Venugopalan & Sundararajan", 2020, "Attribution in Scale and Space",
                    "https://arxiv.org/abs/2004.03383")


@register("blur_ig", display_name="Blur IG", paper=_BLUR_PAPER, family="gradient", passes=(P.LOGITS,),
          needs=("gradients", "extra_forwards"), cost="steps", class_discriminative=True, params=BlurIGParams,
          long_running=True, unit_targets=True)
def blur_ig(ctx: PassContext, p: BlurIGParams) -> Computed:
    """Blur IG (Xu et al. 2020): ``-int_0^max_sigma dF(L(x, s))/dL * dL(x, s)/ds ds`` along
    the scale-space path ``L(x, s)`` = ``x`` blurred by a Gaussian of std ``s`` (from the fully
    blurred image, ``s = max_sigma``, back to ``x``, ``s = 0``). Left Riemann sum over ``steps``
    equal intervals of ``s``; ``dL/ds`` by the finite difference ``(L(x, s + grad_step) - L(x,
    s)) / grad_step``, as the authors' code does. The blur runs on the normalized input with zero
    (mean-colour) padding. Output ``(3, H, W)`` float32, signed, not rescaled; it sums to about
    ``F(x) - F(L(x, max_sigma))`` (completeness along the path)."""
    grad = _gradient_fn(ctx)
    x64 = ctx.x.detach().to(torch.float64)
    sigmas = torch.arange(p.steps + 1, dtype=torch.float64) * (p.max_sigma / p.steps)
    total = torch.zeros_like(x64[0])
    for start in range(0, p.steps, p.batch_size):
        check_cancel(ctx.cancel)
        stop = min(p.steps, start + p.batch_size)
        s = sigmas[start:stop]
        path = gaussian_blur(x64, s)
        d_path = (gaussian_blur(x64, s + p.grad_step) - path) / p.grad_step
        g = grad(path.to(ctx.x.dtype)).to(torch.float64)
        ds = (sigmas[start + 1:stop + 1] - s).view(-1, 1, 1, 1).to(x64.device)
        total += (ds * d_path * g).sum(dim=0)
        report(ctx.progress, stop, p.steps, "Blur IG steps")
    return Computed(raw=(-total).to(ctx.x.dtype), info={"steps": p.steps, "max_sigma": p.max_sigma})


# ---- Guided IG ----------------------------------------------------------------------------------
def guided_path_attribution(grad: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, baseline: torch.Tensor,
                            steps: int, fraction: float, max_dist: float,
                            on_step: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """Guided IG (Kapishnikov et al. 2021, Algorithm 1) for one input ``x`` (float64, any shape),
    ``grad(point) -> gradient`` (same shape). Each of ``steps`` steps takes one gradient at the
    current point ``p``, then closes ``1 / steps`` of the L1 distance to ``x`` by moving only the
    features of smallest ``|gradient|`` (a ``fraction`` of those still free at a time) towards
    ``x``, none beyond ``alpha + max_dist`` of its straight-line position and none left behind
    ``alpha - max_dist``; the attribution accumulates ``(p_new - p_old) * gradient``."""
    x = x.to(torch.float64)
    baseline = baseline.to(torch.float64)
    attr = torch.zeros_like(x)
    diff = x - baseline
    l1_total = float(diff.abs().sum())
    if l1_total == 0:
        return attr
    point = baseline.clone()
    moving = diff != 0
    n = x.numel()
    rank = int(np.floor(fraction * (n - 1)))  # numpy's quantile(method="lower") index
    for step in range(steps):
        g = grad(point)
        g_actual = g.to(torch.float64)
        g_sel = g_actual.clone()
        alpha = (step + 1.0) / steps
        a_min, a_max = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
        x_min, x_max = baseline + a_min * diff, baseline + a_max * diff
        l1_target = l1_total * (1 - (step + 1) / steps)
        for _ in range(n + 2):  # every pass pins at least one more feature at x_max: finite
            old = point.clone()
            where = torch.where(moving, (point - baseline) / torch.where(moving, diff, 1.0),
                                torch.full_like(point, a_max))
            behind = where < a_min
            point[behind] = x_min[behind]
            l1_now = float((point - x).abs().sum())
            if abs(l1_now - l1_target) <= 1e-9 * max(1.0, abs(l1_target), abs(l1_now)):
                attr += (point - old) * g_actual
                break
            g_sel[point == x_max] = float("inf")
            magnitude = g_sel.abs().reshape(-1)
            threshold = magnitude.kthvalue(rank + 1).values
            chosen = (g_sel.abs() <= threshold) & torch.isfinite(g_sel)
            room = float(((point - x_max).abs() * chosen).sum())
            gamma = (l1_now - l1_target) / room if room > 0 else float("inf")
            if gamma > 1.0:
                point[chosen] = x_max[chosen]
            else:
                point[chosen] = (point + gamma * (x_max - point))[chosen]
            attr += (point - old) * g_actual
            if gamma <= 1.0:
                break
        if on_step is not None:
            on_step(step + 1)
    return attr


@register("guided_ig", display_name="Guided IG",
          paper=Paper("Kapishnikov et al.", 2021, "Guided Integrated Gradients: An Adaptive Path Method for "
                      "Removing Noise", "https://arxiv.org/abs/2106.09788"),
          family="gradient", passes=(P.LOGITS,), needs=("gradients", "extra_forwards"), cost="steps (sequential)",
          class_discriminative=True, params=GuidedIGParams, long_running=True, unit_targets=True)
def guided_ig(ctx: PassContext, p: GuidedIGParams) -> Computed:
    """Guided IG (Kapishnikov et al. 2021): Integrated Gradients along an adaptive path from the
    baseline (``"black"``: the black image, normalized; ``"zero"``: the all-zero normalized tensor)
    to ``x`` that moves the features of smallest absolute gradient first, bounded to ``max_dist``
    (relative L1) around the straight line (``max_dist=0`` is straight-line IG with ``steps``
    left-point steps). Path arithmetic in float64. Output ``(3, H, W)`` float32, signed, not
    rescaled; it sums to about ``F(x) - F(baseline)``. One gradient per step, batch 1."""
    grad = _gradient_fn(ctx)
    baseline = ctx.handle.normalize(torch.zeros_like(ctx.x)) if p.baseline == "black" else torch.zeros_like(ctx.x)

    def point_grad(point: torch.Tensor) -> torch.Tensor:
        check_cancel(ctx.cancel)
        return grad(point[None].to(ctx.x.dtype))[0]

    def on_step(done: int) -> None:
        report(ctx.progress, done, p.steps, "Guided IG steps")

    attr = guided_path_attribution(point_grad, ctx.x[0], baseline[0], p.steps, p.fraction, p.max_dist, on_step)
    return Computed(raw=attr.to(ctx.x.dtype), info={"baseline": p.baseline, "steps": p.steps,
                                                    "fraction": p.fraction, "max_dist": p.max_dist})


# ---- XRAI ---------------------------------------------------------------------------------------
#: Felzenszwalb scales, smoothing, minimum segment size (at 224 x 224), dilation radius and the
#: minimum number of new pixels a region must add: the values of the XRAI authors' code.
XRAI_SCALES = (50, 100, 150, 250, 500, 1200)
XRAI_SIGMA = 0.8
XRAI_SEGMENT_SIZE = 224
XRAI_MIN_SEGMENT = 150
XRAI_DILATION = 5
XRAI_MIN_PIXEL_DIFF = 50


def xrai_segments(rgb: np.ndarray) -> np.ndarray:
    """``(S, H, W)`` bool: the candidate regions of XRAI (Kapishnikov et al. 2019) for an
    ``(H, W, 3)`` image. The image is rescaled to [-1, 1] and resized to 224 x 224 (bicubic), and
    segmented with Felzenszwalb & Huttenlocher's graph method at each scale of
    :data:`XRAI_SCALES`; the labels are resized back (nearest) and each segment is dilated by a
    disk of radius 5 px so that regions include their edges. Segments overlap across scales."""
    from skimage.morphology import dilation, disk
    from skimage.segmentation import felzenszwalb
    from skimage.transform import resize

    rgb = np.asarray(rgb)
    if not np.issubdtype(rgb.dtype, np.floating):
        rgb = rgb.astype(np.float64)
    lo, hi = rgb.min(), rgb.max()  # kept in the image's dtype: segment borders are sensitive to rounding
    im = (rgb - lo) / (hi - lo) * 2.0 - 1.0 if hi > lo else np.zeros_like(rgb)
    im = resize(im, (XRAI_SEGMENT_SIZE, XRAI_SEGMENT_SIZE), order=3, mode="constant", preserve_range=True,
                anti_aliasing=True)
    footprint = disk(XRAI_DILATION)
    masks = []
    for scale in XRAI_SCALES:
        seg = felzenszwalb(im, scale=scale, sigma=XRAI_SIGMA, min_size=XRAI_MIN_SEGMENT)
        seg = resize(seg, rgb.shape[:2], order=0, preserve_range=True, mode="constant",
                     anti_aliasing=False).astype(int)
        for label in range(int(seg.min()), int(seg.max()) + 1):
            mask = seg == label
            if mask.any():
                masks.append(_dilate(mask, footprint, dilation))
    return np.stack(masks)


def _dilate(mask: np.ndarray, footprint: np.ndarray, dilation: Callable) -> np.ndarray:
    """Binary dilation of ``mask`` computed on its bounding box grown by the footprint's radius
    (the same pixels as dilating the whole image, several times faster for small segments)."""
    r = footprint.shape[0] // 2
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y0, y1 = max(rows[0] - r, 0), min(rows[-1] + r + 1, mask.shape[0])
    x0, x1 = max(cols[0] - r, 0), min(cols[-1] + r + 1, mask.shape[1])
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = dilation(mask[y0:y1, x0:x1], footprint=footprint)
    return out


def xrai_ranking(attr: np.ndarray, segments: np.ndarray,
                 min_pixel_diff: int = XRAI_MIN_PIXEL_DIFF) -> tuple[np.ndarray, list[np.ndarray]]:
    """XRAI's greedy region ranking (Kapishnikov et al. 2019; the ``full`` variant of the authors' code).

    ``attr`` ``(H, W)`` pixel attributions, ``segments`` ``(S, H, W)`` bool candidate regions.
    Starting from an empty selection, repeatedly add the candidate whose *new* pixels (not yet
    selected) have the highest mean attribution; candidates adding fewer than ``min_pixel_diff``
    new pixels are dropped. Returns the ``(H, W)`` float64 map (each pixel: the gain of the region
    that first covered it; pixels no region covered get their own mean attribution) and the new
    pixels of each region in order of selection."""
    h, w = attr.shape
    a = np.asarray(attr, dtype=np.float64).reshape(-1)
    m = np.asarray(segments, dtype=bool).reshape(len(segments), -1)
    counts = m.sum(axis=1).astype(np.int64)
    # per-candidate attribution sum of its not-yet-covered pixels, kept up to date incrementally (each
    # pixel is subtracted once, when it is covered), in row chunks so that no (S, H*W) float copy exists
    sums = np.concatenate([m[i:i + 64].astype(np.float64) @ a for i in range(0, len(m), 64)])
    alive = np.ones(len(m), dtype=bool)
    covered = np.zeros(a.shape, dtype=bool)
    out = np.full(a.shape, -np.inf)
    regions: list[np.ndarray] = []
    while True:
        alive &= counts >= min_pixel_diff
        if not alive.any():
            break
        gains = np.where(alive, sums / np.maximum(counts, 1), -np.inf)
        best = int(np.argmax(gains))  # the first of equal gains, in candidate order
        new = m[best] & ~covered
        out[new] = gains[best]
        regions.append(new.reshape(h, w))
        covered |= new
        alive[best] = False
        idx = np.flatnonzero(new)
        cols = m[:, idx]
        counts -= cols.sum(axis=1)
        sums -= cols.astype(np.float64) @ a[idx]
    rest = ~covered
    if rest.any():
        out[rest] = a[rest].mean()
    return out.reshape(h, w), regions


@register("xrai", display_name="XRAI",
          paper=Paper("Kapishnikov et al.", 2019, "XRAI: Better Attributions Through Regions",
                      "https://arxiv.org/abs/1906.02825"),
          family="region", passes=(P.LOGITS,), needs=("gradients", "extra_forwards"),
          cost="2 x steps + segmentation", class_discriminative=True, params=XRAIParams, long_running=True,
          unit_targets=True)
def xrai(ctx: PassContext, p: XRAIParams) -> Computed:
    """XRAI (Kapishnikov et al. 2019): Integrated Gradients (right Riemann sum of ``steps``, as
    our ``integrated_gradients``) from a black and from a white baseline, averaged, reduced over
    the colour channels by their maximum (as the authors' code does), then :func:`xrai_ranking`
    over the multi-scale Felzenszwalb regions of :func:`xrai_segments` of the RGB image. Output
    ``(H, W)`` float32: per pixel the attribution density of the region that covered it first, so
    the most important regions have the largest values; ``info["regions"]`` counts the regions."""
    grad = _gradient_fn(ctx)
    x = ctx.x.detach()
    baselines = ctx.handle.normalize(torch.cat([torch.zeros_like(x), torch.ones_like(x)]))
    deltas = x - baselines  # (2, 3, H, W)
    total = 2 * p.steps
    acc = torch.zeros_like(deltas)
    for start in range(0, total, p.batch_size):
        check_cancel(ctx.cancel)
        stop = min(total, start + p.batch_size)
        which = torch.arange(start, stop, device=x.device) // p.steps
        alphas = (torch.arange(start, stop, device=x.device) % p.steps + 1).to(x.dtype) / p.steps
        g = grad(baselines[which] + alphas.view(-1, 1, 1, 1) * deltas[which])
        acc.index_add_(0, which, g)
        report(ctx.progress, stop, total, "XRAI integrated-gradients steps")
    ig = (deltas * acc / p.steps).mean(dim=0)  # (3, H, W)
    pixel = ig.max(dim=0).values.cpu().numpy()
    rgb = ctx.handle.denormalize(x)[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    gain_map, regions = xrai_ranking(pixel, xrai_segments(rgb))
    raw = torch.from_numpy(gain_map).to(device=x.device, dtype=x.dtype)
    return Computed(raw=raw, info={"steps": p.steps, "regions": len(regions), "baselines": "black, white"})
