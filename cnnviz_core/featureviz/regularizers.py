"""Regularizers for image synthesis by gradient ascent: random transformations ("transformation
robustness"), total variation and blur. All act on ``(1, 3, H, W)`` RGB tensors in [0, 1] and are
differentiable unless stated; randomness comes from a seeded ``torch.Generator`` (reproducible).

* Jitter: Mordvintsev, Olah & Tyka, "Inceptionism: Going Deeper into Neural Networks", Google
  Research blog 2015, https://research.google/blog/inceptionism-going-deeper-into-neural-networks/
* Random scale and rotation: Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017,
  https://distill.pub/2017/feature-visualization/
* Total variation: Mahendran & Vedaldi, "Understanding Deep Image Representations by Inverting
  Them", CVPR 2015, https://arxiv.org/abs/1412.0035
* Blur every few steps: Yosinski et al., "Understanding Neural Networks Through Deep
  Visualization", 2015, https://arxiv.org/abs/1506.06579
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def random_roll(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Circular shift by a uniform random ``(dy, dx)`` in ``[-max_shift, max_shift]`` (jitter)."""
    if max_shift <= 0:
        return x
    dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def random_scale_rotate(x: torch.Tensor, scale: float, degrees: float, gen: torch.Generator) -> torch.Tensor:
    """Zoom by a random factor in ``[1 - scale, 1 + scale]`` and rotate by a random angle in
    ``[-degrees, degrees]`` around the centre (one bilinear resampling, reflected borders)."""
    if scale <= 0 and degrees <= 0:
        return x
    factor = _uniform(gen, 1 - scale, 1 + scale) if scale > 0 else 1.0
    angle = math.radians(_uniform(gen, -degrees, degrees)) if degrees > 0 else 0.0
    cos, sin = math.cos(angle) / factor, math.sin(angle) / factor
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.unsqueeze(0).expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@dataclass(frozen=True)
class Robustness:
    """Random transformations applied before each forward: jitter (pixels), scale (fraction),
    rotation (degrees). ``Robustness()`` is Olah et al.'s mild default."""

    jitter: int = 8
    scale: float = 0.05
    degrees: float = 5.0

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return random_scale_rotate(random_roll(x, self.jitter, gen), self.scale, self.degrees, gen)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (anisotropic TV, beta = 1), a scalar."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with standard deviation ``sigma`` pixels (reflected borders)."""
    if sigma <= 0:
        return x
    radius = max(1, int(math.ceil(3 * sigma)))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
