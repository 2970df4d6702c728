"""Perturbation methods against their reference libraries at the same number of forwards, and the
exact Score-CAM comparison.

The methods are read from the registry: every long-running method that needs extra forwards and no
gradients (:func:`perturbation_methods`). :data:`REFERENCES` maps a key to the constructor of its
pair (ours vs the library's implementation, used as the library's documentation shows, on a deep
copy of the model whose parameters require grad): pytorch-grad-cam for Score-CAM and Ablation-CAM,
TorchCAM for SS-CAM and IS-CAM, Captum for LIME, KernelSHAP (SLIC superpixels computed inside the
timed call on both sides) and occlusion. RISE has no installed reference library: it is timed
against its floor, a plain batched-forward loop over the same masks (precomputed, untimed) on the
model itself, and beside it the same loop on the BatchNorm-folded twin ours uses. A method without
a pair, or a pair whose method or library is missing, is skipped with a printed note.

Both sides run the same batch size (``--perturb-batch``, Score-CAM exact: ``--scorecam-batch``, 16)
and the same number of masked forwards; the forwards are counted (ours: from the result's info, +1
for the main pass; theirs: images through the model, counted by a forward pre-hook) and printed.
Each pair is timed by :func:`~.timing.interleaved` in alternating order, without a warm-up round
(one untimed batch through each model first).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..attribution import METHODS, explain_detailed
from ..hooks import capture
from ..models import ModelHandle, load_model
from .models_bench import reference_model
from .timing import Timing, interleaved, ratio

PERTURBATION_GOAL = 1.5


def perturbation_methods() -> list[str]:
    """Registry keys of the perturbation methods: long-running, extra forwards, no gradients."""
    return [k for k, m in METHODS.items()
            if m.long_running and "extra_forwards" in m.needs and "gradients" not in m.needs]


class ForwardCounter:
    """Counts the images that go through ``model`` (a forward pre-hook on its root, removed by ``close``)."""

    def __init__(self, model: nn.Module) -> None:
        self.count = 0
        self._hook = model.register_forward_pre_hook(self._pre)

    def _pre(self, _m: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], torch.Tensor):
            self.count += int(args[0].shape[0])

    def close(self) -> None:
        self._hook.remove()


@dataclass
class Env:
    """What every pair of one section shares: model, its reference copy, input, target, settings."""

    handle: ModelHandle
    ref: nn.Module
    x: torch.Tensor
    target: int
    layer: str
    channels: int
    batch: int
    forwards: int
    samples: int
    counter: ForwardCounter

    @property
    def size(self) -> tuple[int, int]:
        return int(self.x.shape[-2]), int(self.x.shape[-1])


class Unavailable(Exception):
    """A pair cannot run here (method not registered, library missing); the message says why."""


@dataclass
class Pair:
    """``ours`` and ``ref`` take the round's input; ``ours_forwards(info)`` = masked forwards of ours."""

    ref_label: str
    ours_params: dict[str, Any]
    ref: Callable[[torch.Tensor], object]
    ours_forwards: Callable[[dict], int]
    extra: dict[str, Callable[[torch.Tensor], object]] = field(default_factory=dict)
    note: str = ""
    goal: Optional[float] = PERTURBATION_GOAL


def _import(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(f"{module} is not installed ({exc})") from None


def _pgc(env: Env, which: str) -> Callable[[torch.Tensor], object]:
    pgc = _import("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = env.ref.get_submodule(env.layer)
    targets = [ClassifierOutputTarget(env.target)]

    def run(xr: torch.Tensor) -> object:
        if which == "ScoreCAM":
            cam = pgc.ScoreCAM(model=env.ref, target_layers=[layer])
            cam.batch_size = env.batch  # the attribute pgc's ScoreCAM reads (default 16)
        else:
            cam = pgc.AblationCAM(model=env.ref, target_layers=[layer], batch_size=env.batch)
        with cam:
            return cam(input_tensor=xr, targets=targets)
    return run


def _torchcam(env: Env, which: str, samples: int) -> Callable[[torch.Tensor], object]:
    methods = _import("torchcam.methods")
    kwargs: dict[str, Any] = {"batch_size": env.batch, "num_samples": samples, "input_shape": (3, *env.size)}
    if which == "SSCAM":
        kwargs["std"] = 2.0

    def run(xr: torch.Tensor) -> object:
        with getattr(methods, which)(env.ref, target_layer=env.layer, **kwargs) as cam:
            with torch.no_grad():
                env.ref(xr)
            return cam(class_idx=env.target)
    return run


def _superpixels(env: Env, xr: torch.Tensor, segments: int, compactness: float) -> torch.Tensor:
    from skimage.segmentation import slic

    rgb = env.handle.denormalize(xr)[0].clamp(0, 1).permute(1, 2, 0).detach().double().numpy()
    labels = slic(rgb, n_segments=segments, compactness=compactness, start_label=0, channel_axis=-1)
    return torch.from_numpy(labels.astype("int64"))[None, None]


def _captum_surrogate(env: Env, which: str) -> Callable[[torch.Tensor], object]:
    attr = _import("captum.attr")
    defaults = METHODS[which].params
    segments, compactness = defaults.get("segments", 50), defaults.get("compactness", 10.0)

    def run(xr: torch.Tensor) -> object:
        mask = _superpixels(env, xr, segments, compactness)
        if which == "lime":
            from captum._utils.models.linear_model import SkLearnLinearRegression

            algo = attr.Lime(env.ref, interpretable_model=SkLearnLinearRegression())
        else:
            algo = attr.KernelShap(env.ref)
        return algo.attribute(xr, baselines=0.0, target=env.target, feature_mask=mask, n_samples=env.forwards,
                              perturbations_per_eval=env.batch)
    return run


def occlusion_geometry(size: int) -> tuple[int, int]:
    """``(patch, stride)`` = ``(size // 4, size // 8)``: 7 x 7 windows where ``size`` is a multiple of 8
    (then Captum's and our windows coincide)."""
    return max(2, size // 4), max(1, size // 8)


def _captum_occlusion(env: Env, patch: int, stride: int) -> Callable[[torch.Tensor], object]:
    attr = _import("captum.attr")
    grey = env.handle.normalize(torch.full_like(env.x, 0.5))

    def probs(t: torch.Tensor) -> torch.Tensor:
        return torch.softmax(env.ref(t), dim=1)

    def run(xr: torch.Tensor) -> object:
        return attr.Occlusion(probs).attribute(xr, sliding_window_shapes=(3, patch, patch), strides=(3, stride, stride),
                                               baselines=grey, target=env.target, perturbations_per_eval=env.batch)
    return run


def _rise_floor(env: Env, masks: torch.Tensor, forward: Callable[[torch.Tensor], torch.Tensor],
                p: float) -> Callable[[torch.Tensor], object]:
    def run(xr: torch.Tensor) -> object:
        acc = torch.zeros(env.size, dtype=torch.float64)
        with torch.inference_mode():
            for start in range(0, masks.shape[0], env.batch):
                m = masks[start:start + env.batch]
                probs = env.handle.probabilities(forward(xr * m[:, None]))[:, env.target]
                acc += torch.einsum("n,nhw->hw", probs.double(), m.double())
        return acc / (masks.shape[0] * p)
    return run


def _pair(key: str, env: Env) -> Pair:
    b = env.batch
    if key == "scorecam":
        return Pair("pytorch-grad-cam ScoreCAM", {"batch_size": b}, _pgc(env, "ScoreCAM"),
                    lambda info: int(info["channels_used"]))
    if key == "ablationcam":
        return Pair("pytorch-grad-cam AblationCAM", {"batch_size": b}, _pgc(env, "AblationCAM"),
                    lambda info: env.channels, note="ours forwards only the network after the layer")
    if key == "sscam":
        return Pair("TorchCAM SSCAM", {"batch_size": b, "samples": env.samples},
                    _torchcam(env, "SSCAM", env.samples), lambda info: int(info["channels_used"]) * env.samples)
    if key == "iscam":  # ours skips the c_1 = 0 step: steps = samples + 1 runs `samples` forwards per channel
        return Pair("TorchCAM ISCAM", {"batch_size": b, "steps": env.samples + 1},
                    _torchcam(env, "ISCAM", env.samples), lambda info: int(info["channels_used"]) * env.samples)
    if key in ("lime", "kernel_shap"):
        label = "Captum Lime (SkLearnLinearRegression)" if key == "lime" else "Captum KernelShap"
        return Pair(label, {"batch_size": b, "samples": env.forwards}, _captum_surrogate(env, key),
                    lambda info: int(info["samples"]), note="SLIC inside the timed call on both sides")
    if key == "occlusion":
        patch, stride = occlusion_geometry(min(env.size))
        return Pair("Captum Occlusion", {"batch_size": b, "patch": patch, "stride": stride},
                    _captum_occlusion(env, patch, stride), lambda info: int(info["windows"]),
                    note=f"patch {patch} px, stride {stride} px")
    if key == "rise":
        from ..attribution.rise import rise_masks

        p = METHODS["rise"].params
        masks = rise_masks(env.forwards, env.size, p["cells"], p["p"], p["seed"])
        return Pair("floor: plain batched loop over the same masks", {"batch_size": b, "masks": env.forwards},
                    _rise_floor(env, masks, env.ref, p["p"]), lambda info: int(info["masks"]),
                    extra={"the same loop on our folded twin": _rise_floor(env, masks, env.handle.batch_logits,
                                                                          p["p"])},
                    note="no installed reference library: timed against its floor (masks precomputed, untimed)",
                    goal=None)
    raise Unavailable("no reference configured in cnnviz_core.bench.perturbation_bench")


def layer_channels(handle: ModelHandle, x: torch.Tensor, layer: str) -> int:
    with torch.inference_mode(), capture(handle.model, [layer]) as store:
        handle.model(x)
    return int(store[layer].shape[1])


def smooth_input(handle: ModelHandle, size: int, seed: int = 2) -> torch.Tensor:
    """Bilinearly upsampled 8 x 8 random colours, normalized: SLIC finds superpixels in it (in white
    noise it finds one)."""
    low = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return handle.normalize(F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False))


def make_env(name: str, size: int, layer: Optional[str], batch: int, forwards: int, samples: int) -> Env:
    handle = load_model(name, weights=None)
    x = smooth_input(handle, size)
    layer = handle.default_layer if layer in (None, "", "default") else layer
    handle.module(layer)
    target = int(handle.forward(x)[0].argmax())
    ref = reference_model(handle.model)
    with torch.inference_mode():  # first batch through each model: oneDNN set-up, the folded twin built
        xb = x.repeat(batch, 1, 1, 1)
        handle.batch_logits(xb), handle.model(xb), ref(xb)
    return Env(handle, ref, x, target, layer, layer_channels(handle, x, layer), batch, forwards, samples,
               ForwardCounter(ref))


@dataclass
class PairResult:
    key: str
    ref_label: str
    ours: Timing
    ref: Timing
    ours_forwards: int
    ref_forwards: int
    extra: dict[str, Timing]
    note: str
    goal: Optional[float] = PERTURBATION_GOAL

    @property
    def speedup(self) -> float:
        """Ratio of medians: the reference's time over ours."""
        return ratio(self.ref, self.ours)

    @property
    def per_forward_speedup(self) -> float:
        return (self.ref.median / max(self.ref_forwards, 1)) / (self.ours.median / max(self.ours_forwards, 1))

    def as_dict(self) -> dict[str, Any]:
        return {"reference": self.ref_label, "ours": self.ours.as_dict(), "ref": self.ref.as_dict(),
                "speedup": self.speedup, "ours_forwards": self.ours_forwards, "ref_forwards": self.ref_forwards,
                "extra": {k: v.as_dict() for k, v in self.extra.items()}, "note": self.note, "goal": self.goal}

    def lines(self) -> list[str]:
        goal = self.goal
        out = [f"  {self.key:<12} ours {self.ours.fmt('s')} | {self.ref_label} {self.ref.fmt('s')}",
               f"  {'':<12} ours {self.speedup:.2f}x faster (ratio of medians); forwards ours {self.ours_forwards} "
               f"/ theirs {self.ref_forwards}"]
        if abs(self.ours_forwards - self.ref_forwards) > 0.01 * max(self.ref_forwards, 1) + 2:
            out[-1] += f" (differ: per forward {self.per_forward_speedup:.2f}x)"
        if goal is not None:
            out[-1] += f"; goal >= {goal}x: {'met' if self.speedup >= goal else 'NOT met'}"
        for k, t in self.extra.items():
            out.append(f"  {'':<12} {k} {t.fmt('s')}: ours takes {ratio(self.ours, t):.2f}x its time")
        if self.note:
            out.append(f"  {'':<12} ({self.note})")
        return out


def run_pair(key: str, env: Env, repeats: int, progress: Optional[Callable[[str], None]] = None) -> PairResult:
    """Build ``key``'s pair on ``env`` and time it (raises :class:`Unavailable`)."""
    if key not in METHODS:
        raise Unavailable(f"method {key!r} is not registered (yet)")
    pair = _pair(key, env)
    last: dict[str, Any] = {}

    def ours(xr: torch.Tensor) -> object:
        res = explain_detailed(env.handle, xr, key, env.target, env.layer, cache=None,
                               options={key: pair.ours_params})[key]
        last["info"] = res.info
        return res

    def ref(xr: torch.Tensor) -> object:
        env.counter.count = 0
        out = pair.ref(xr)
        last["ref_forwards"] = env.counter.count
        return out

    t = interleaved({"ours": ours, "ref": ref, **pair.extra}, env.x, repeats, warmup=0, progress=progress)
    extra = {k: t[k] for k in pair.extra}
    return PairResult(key, pair.ref_label, t["ours"], t["ref"], 1 + pair.ours_forwards(last["info"]),
                      last["ref_forwards"], extra, pair.note, pair.goal)


def perturbation_bench(args: argparse.Namespace) -> dict[str, Any]:
    env = make_env(args.perturb_model, args.perturb_size, args.perturb_layer, args.perturb_batch,
                   args.perturb_forwards, args.perturb_samples)
    keys = perturbation_methods()
    if args.perturb_methods:
        wanted = args.perturb_methods.split(",")
        keys = [k for k in keys if k in wanted] + [k for k in wanted if k not in keys]
    print(f"\n== perturbation methods vs their reference libraries: {args.perturb_model} random weights, "
          f"{args.perturb_size} px, layer {env.layer} ({env.channels} channels), batch {env.batch} both sides, "
          f"RISE masks / LIME and KernelSHAP samples {env.forwards}, SS-CAM / IS-CAM samples {env.samples}, "
          f"{args.perturb_repeats} interleaved rounds in alternating order: median [min-max, n] ==", flush=True)
    out: dict[str, Any] = {}
    try:
        for key in keys:
            try:
                result = run_pair(key, env, args.perturb_repeats, progress=_progress(args))
            except Unavailable as exc:
                print(f"  {key:<12} skipped: {exc}", flush=True)
                out[key] = {"skipped": str(exc)}
                continue
            print("\n".join(result.lines()), flush=True)
            out[key] = result.as_dict()
    finally:
        env.counter.close()
    return out


def scorecam_comparison(args: argparse.Namespace) -> dict[str, Any]:
    """Exact Score-CAM (all channels), ours vs pytorch-grad-cam, batch ``--scorecam-batch`` on both sides,
    ``--scorecam-repeats`` interleaved rounds, on ``--scorecam-model`` at ``--scorecam-size``."""
    env = make_env(args.scorecam_model, args.scorecam_size, None, args.scorecam_batch, 0, 0)
    print(f"\n== Score-CAM exact, {args.scorecam_model} {args.scorecam_size} px, layer {env.layer} "
          f"({env.channels} channels), batch {env.batch} both sides, {args.scorecam_repeats} interleaved rounds "
          f"in alternating order ==", flush=True)
    try:
        result = run_pair("scorecam", env, args.scorecam_repeats, progress=_progress(args))
    finally:
        env.counter.close()
    print("\n".join(result.lines()), flush=True)
    return result.as_dict()


def _progress(args: argparse.Namespace) -> Optional[Callable[[str], None]]:
    return (lambda line: print(line, flush=True)) if getattr(args, "verbose", False) else None
