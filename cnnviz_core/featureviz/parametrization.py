"""How a synthesized image is parametrized: plain pixels, or a decorrelated colour + Fourier basis.

Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017,
https://distill.pub/2017/feature-visualization/ (section "Preconditioning and Parameterization"), and
Mordvintsev et al., "Differentiable Image Parameterizations", Distill 2018,
https://distill.pub/2018/differentiable-parameterizations/: optimizing the image's Fourier
coefficients scaled by ``1 / frequency`` whitens the gradient's spectrum (all frequencies are
learned at similar speed), and optimizing colours in a decorrelated space (the square root of the
ImageNet RGB covariance) does the same across channels. Both make high-frequency noise far less
likely than plain pixel ascent.

Every parametrization exposes ``parameters()`` (the leaf tensors to optimize, ``requires_grad``)
and ``rgb()``, a differentiable ``(1, 3, H, W)`` float32 image in [0, 1].
"""
from __future__ import annotations

from typing import Literal, Protocol

import torch

from .regularizers import gaussian_blur

Parametrization = Literal["pixel", "fourier"]
PARAMETRIZATIONS: tuple[str, ...] = ("pixel", "fourier")

#: Square root of the ImageNet RGB colour covariance (columns: decorrelated directions), as
#: published with Olah et al. 2017 (lucid's ``color_correlation_svd_sqrt``).
COLOR_CORRELATION_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


class ImageParametrization(Protocol):
    def parameters(self) -> list[torch.Tensor]: ...

    def rgb(self) -> torch.Tensor: ...

    def after_step(self, step: int) -> None: ...


class PixelImage:
    """RGB pixels optimized directly, kept in [0, 1] by clamping after each step; optionally blurred
    every ``blur_every`` steps with ``blur_sigma`` (Yosinski et al. 2015). Starts from grey 0.5 plus
    Gaussian noise of std ``noise``."""

    def __init__(self, size: int, gen: torch.Generator, device: torch.device, *, noise: float = 0.1,
                 blur_every: int = 0, blur_sigma: float = 0.5) -> None:
        start = 0.5 + noise * torch.randn(1, 3, size, size, generator=gen)
        self.pixels = start.clamp(0, 1).to(device).requires_grad_(True)
        self.blur_every, self.blur_sigma = blur_every, blur_sigma

    def parameters(self) -> list[torch.Tensor]:
        return [self.pixels]

    def rgb(self) -> torch.Tensor:
        return self.pixels

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        if self.blur_every and step % self.blur_every == 0:
            self.pixels.copy_(gaussian_blur(self.pixels, self.blur_sigma))
        self.pixels.clamp_(0, 1)


class FourierImage:
    """Fourier coefficients (``torch.fft.rfft2`` layout, orthonormal) scaled by
    ``1 / max(f, 1/size) ** decay``, mapped through the decorrelated colour basis and a sigmoid."""

    def __init__(self, size: int, gen: torch.Generator, device: torch.device, *, std: float = 0.01,
                 decay: float = 1.0) -> None:
        fy = torch.fft.fftfreq(size).view(-1, 1)
        fx = torch.fft.rfftfreq(size).view(1, -1)
        freqs = (fx ** 2 + fy ** 2).sqrt()
        self.scale = (1.0 / freqs.clamp_min(1.0 / size) ** decay).to(device)
        self.size = size
        shape = (1, 3, *freqs.shape, 2)
        self.spectrum = (std * torch.randn(shape, generator=gen)).to(device).requires_grad_(True)
        basis = COLOR_CORRELATION_SQRT / COLOR_CORRELATION_SQRT.norm(dim=0).max()
        self.basis = basis.to(device)

    def parameters(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def rgb(self) -> torch.Tensor:
        coeffs = torch.view_as_complex(self.spectrum) * self.scale
        decorrelated = torch.fft.irfft2(coeffs, s=(self.size, self.size), norm="ortho") / 4.0
        colours = torch.einsum("ij,bjhw->bihw", self.basis, decorrelated)
        return torch.sigmoid(colours)

    def after_step(self, step: int) -> None:
        return None


def make_image(kind: Parametrization, size: int, gen: torch.Generator, device: torch.device,
               *, blur_every: int = 0, blur_sigma: float = 0.5) -> ImageParametrization:
    """A fresh ``size x size`` parametrized image (see :data:`PARAMETRIZATIONS`)."""
    if kind == "fourier":
        return FourierImage(size, gen, device)
    return PixelImage(size, gen, device, blur_every=blur_every, blur_sigma=blur_sigma)
