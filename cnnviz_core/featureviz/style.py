"""Neural style transfer on VGG features.

Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks", CVPR 2016,
https://openaccess.thecvf.com/content_cvpr_2016/html/Gatys_Image_Style_Transfer_CVPR_2016_paper.html
(arXiv 1508.06576): synthesize an image whose ``conv4_2`` responses match the content photo and whose
Gram matrices of ``conv1_1 .. conv5_1`` responses match the style image.
Colour preservation: Gatys, Bethge, Hertzmann & Shechtman, "Preserving Color in Neural Artistic
Style Transfer", 2016, https://arxiv.org/abs/1606.05897 (luminance-only transfer, Sec. 2.2).

Losses (``F``: a layer's ``(N_l, M_l)`` responses, ``N_l`` channels, ``M_l`` positions; responses are
taken after each ReLU, as in the paper's Caffe model where ReLUs run in place):

* content: ``mean((F - P)^2)`` at the content layer (the paper's ``1/2 sum`` divided by the element
  count, so weights do not depend on the image size);
* style: ``sum_l w_l mean((G_l - A_l)^2)`` with ``G_l = F F^T / (N_l M_l)`` (the paper's ``E_l`` up to the
  constant ``4 / N_l^2``, folded into ``style_weight``);
* total: ``content_weight * content + style_weight * style + tv_weight * TV``.

The network runs only up to the deepest layer used. Meaningful pictures need ImageNet weights; with
random weights (offline) the optimization still runs and lowers its losses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import MethodUnavailableError, ParameterError
from ..hooks import StopForward, capture
from ..models import ModelHandle
from ..progress import CancelToken, ProgressFn, check_cancel, report
from .dream import image_tensor
from .params import SIZE_RANGE, STEPS_RANGE, as_model_input, check_choice, check_float, check_int, compute_mode
from .regularizers import total_variation
from .tiles import rgb_uint8

STYLE_LAYERS: tuple[str, ...] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
CONTENT_LAYER = "conv4_2"
Init = Literal["content", "style", "noise"]
INITS: tuple[str, ...] = ("content", "style", "noise")
OPTIMIZERS: tuple[str, ...] = ("lbfgs", "adam")


def vgg_layer_paths(model: nn.Module) -> dict[str, str]:
    """``"conv{block}_{index}"`` -> module path of that conv's ReLU (e.g. ``conv4_2`` ->
    ``features.22`` in VGG-19), numbered like Simonyan & Zisserman's tables."""
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        raise MethodUnavailableError("style transfer needs a VGG network (a 'features' Sequential)")
    paths, block, index, pending = {}, 1, 0, None
    for name, module in features.named_children():
        if isinstance(module, nn.Conv2d):
            index += 1
            pending = f"conv{block}_{index}"
            paths[pending] = f"features.{name}"
        elif isinstance(module, nn.ReLU) and pending:
            paths[pending] = f"features.{name}"
            pending = None
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            block, index, pending = block + 1, 0, None
    return paths


def gram(features: torch.Tensor) -> torch.Tensor:
    """``(1, N, H, W)`` responses -> ``(N, N)`` Gram matrix ``F F^T / (N M)`` in float32."""
    f = features[0].float().flatten(1)
    return f @ f.T / f.numel()


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """Y of YIQ (``0.299 R + 0.587 G + 0.114 B``), ``(1, 1, H, W)``."""
    return (rgb * torch.tensor([0.299, 0.587, 0.114], device=rgb.device).view(1, 3, 1, 1)).sum(1, keepdim=True)


def with_luminance(rgb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``rgb`` with its YIQ luminance replaced by ``y`` (chrominance I, Q kept), clamped to [0, 1]."""
    return (rgb + (y - luminance(rgb))).clamp(0, 1)


@dataclass
class StyleResult:
    """``image``: uint8 ``(H, W, 3)``, the content's aspect ratio, longer side ``size``; ``history``:
    ``{"content", "style", "tv", "total"}`` per step (value before the step) plus the final value."""

    image: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)


class _Losses:
    """Targets computed once; ``__call__(rgb)`` runs the truncated VGG and returns the loss terms."""

    def __init__(self, handle: ModelHandle, content: torch.Tensor, style: torch.Tensor, layers: dict[str, str],
                 style_layers: Sequence[str], weights: Sequence[float], content_layer: str,
                 channels_last: bool, precision: str) -> None:
        self.handle, self.layers, self.channels_last, self.precision = handle, layers, channels_last, precision
        self.style_layers, self.weights, self.content_layer = list(style_layers), list(weights), content_layer
        order = list(layers.values())
        self.stop = max((layers[n] for n in [*style_layers, content_layer]), key=order.index)
        with torch.no_grad():
            self.content_target = self.features(content)[content_layer].float()
            style_feats = self.features(style)
            self.style_targets = [gram(style_feats[n]) for n in self.style_layers]

    def features(self, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        wanted = {n: self.layers[n] for n in [*self.style_layers, self.content_layer]}
        x = as_model_input(self.handle.normalize(rgb), self.channels_last)
        with self.handle.lock, compute_mode(self.handle.device, self.precision), \
                capture(self.handle.model, list(wanted.values()), stop_at=self.stop) as store:
            try:
                self.handle.model(x)
            except StopForward:
                pass
        return {n: store[p] for n, p in wanted.items()}

    def __call__(self, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(rgb)
        content = (feats[self.content_layer].float() - self.content_target).pow(2).mean()
        style = sum(w * (gram(feats[n]) - t).pow(2).mean()
                    for n, w, t in zip(self.style_layers, self.weights, self.style_targets))
        return {"content": content, "style": style, "tv": total_variation(rgb)}


def _prepare(content: Image.Image, style: Image.Image, size: int, preserve_color: bool,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Content at longer side ``size``, style at the same longer side; in colour-preservation mode
    both become grey luminance images, the style's luminance matched to the content's mean/std."""
    c = image_tensor(content, size, device)
    if max(c.shape[2:]) < size:  # upscale small photos too: the output size is what the user asked
        c = torch.nn.functional.interpolate(c, scale_factor=size / max(c.shape[2:]), mode="bilinear",
                                            align_corners=False).clamp(0, 1)
    s = image_tensor(style.resize((max(1, round(style.width * size / max(style.size))),
                                   max(1, round(style.height * size / max(style.size))))), size, device)
    if not preserve_color:
        return c, s
    yc, ys = luminance(c), luminance(s)
    ys = ((ys - ys.mean()) * (yc.std() / ys.std().clamp_min(1e-6)) + yc.mean()).clamp(0, 1)
    return yc.expand(-1, 3, -1, -1).contiguous(), ys.expand(-1, 3, -1, -1).contiguous()


def style_transfer(
    handle: ModelHandle,
    content: Image.Image,
    style: Image.Image,
    *,
    steps: int = 300,
    size: int = 256,
    optimizer: str = "lbfgs",
    init: Init = "content",
    content_weight: float = 1.0,
    style_weight: float = 1e6,
    tv_weight: float = 0.0,
    style_layers: Sequence[str] = STYLE_LAYERS,
    style_layer_weights: Optional[Sequence[float]] = None,
    content_layer: str = CONTENT_LAYER,
    preserve_color: bool = False,
    lr: Optional[float] = None,
    seed: int = 0,
    precision: str = "float32",
    channels_last: bool = False,
    preview_every: int = 0,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelToken] = None,
) -> StyleResult:
    """Gatys et al. 2016 style transfer of ``style`` onto ``content`` with ``handle``'s VGG
    (``load_model("vgg19")``; any VGG works). Output: longer side ``size`` (32..1024) px.

    ``optimizer``: ``"lbfgs"`` (one L-BFGS iteration with strong-Wolfe line search per step, as in
    the paper; the total loss never increases) or ``"adam"`` (``lr`` default 0.02). ``init``:
    start from the content, the style (resized) or uniform noise. Layer weights default to
    ``1/len(style_layers)``. ``handle.lock`` is held per forward; ``cancel`` is checked between
    steps; ``progress`` gets ``losses={"content", "style", "tv", "total"}`` each step.
    """
    steps = check_int("steps", steps, *STEPS_RANGE)
    size = check_int("size", size, *SIZE_RANGE)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_choice("init", init, INITS)
    for name, value in (("content_weight", content_weight), ("style_weight", style_weight), ("tv_weight", tv_weight)):
        check_float(name, value, 0.0, 1e12)
    layers = vgg_layer_paths(handle.model)
    for name in [*style_layers, content_layer]:
        if name not in layers:
            raise ParameterError(f"unknown VGG layer {name!r}; choose from {', '.join(layers)}")
    if not style_layers:
        raise ParameterError("give at least one style layer")
    weights = list(style_layer_weights or [1.0 / len(style_layers)] * len(style_layers))
    if len(weights) != len(style_layers):
        raise ParameterError(f"{len(style_layers)} style layers but {len(weights)} layer weights")
    content_rgb, style_rgb = _prepare(content, style, size, preserve_color, handle.device)
    losses = _Losses(handle, content_rgb, style_rgb, layers, style_layers, weights, content_layer,
                     channels_last, precision)
    gen = torch.Generator().manual_seed(int(seed))
    start = {"content": content_rgb,
             "style": torch.nn.functional.interpolate(style_rgb, size=content_rgb.shape[2:], mode="bilinear"),
             "noise": torch.rand(content_rgb.shape, generator=gen).to(handle.device)}[init]
    image = start.clone(memory_format=torch.contiguous_format).requires_grad_(True)
    if optimizer == "lbfgs":
        opt: torch.optim.Optimizer = torch.optim.LBFGS([image], lr=lr or 1.0, max_iter=1, max_eval=20, history_size=50,
                                                       tolerance_grad=0.0, tolerance_change=0.0,
                                                       line_search_fn="strong_wolfe")
    else:
        opt = torch.optim.Adam([image], lr=lr or 0.02)

    def total(terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return content_weight * terms["content"] + style_weight * terms["style"] + tv_weight * terms["tv"]

    with torch.no_grad():  # L-BFGS's fixed tolerances assume a loss of order 1: optimize loss / loss0
        scale = 1.0 / max(total(losses(image)).item(), 1e-30)
    history: list[dict[str, float]] = []
    for step in range(1, steps + 1):
        check_cancel(cancel)
        first: dict[str, float] = {}

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            terms = losses(image)
            loss = total(terms)
            (loss * scale).backward()
            if not first:
                first.update({k: v.item() for k, v in terms.items()}, total=loss.item())
            return loss * scale

        opt.step(closure)
        history.append(first)
        due = preview_every and (step % preview_every == 0 or step == steps)
        report(progress, step, steps, "style transfer", losses=dict(first),
               preview=_output(image, content_rgb, content, preserve_color) if due else None)
    with torch.no_grad():
        terms = losses(image)
        history.append({**{k: v.item() for k, v in terms.items()}, "total": total(terms).item()})
    return StyleResult(_output(image, content_rgb, content, preserve_color), history)


def _output(image: torch.Tensor, content_rgb: torch.Tensor, content: Image.Image, preserve_color: bool) -> np.ndarray:
    rgb = image.detach().clamp(0, 1)
    if preserve_color:  # luminance from the synthesis, colour (I, Q) from the content photo
        colour = image_tensor(content, max(content.size), rgb.device)
        colour = torch.nn.functional.interpolate(colour, size=rgb.shape[2:], mode="bilinear", align_corners=False)
        rgb = with_luminance(colour, luminance(rgb))
    return rgb_uint8(rgb)
