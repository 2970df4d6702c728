"""RISE (Petsiuk, Das & Saenko 2018): the target's probability on randomly masked inputs, averaged
per pixel over the masks that keep it.

The masks are built as in the paper (Sec. 3.2) and the authors' code (eclique/RISE): ``N`` binary
grids of ``s x s`` cells, each cell kept with probability ``p``, upsampled bilinearly to
``(s + 1) C_H x (s + 1) C_W`` with ``C = ceil(H / s)`` the cell size in pixels, then cropped to
``H x W`` at a random shift of ``[0, C)`` pixels per axis. The bilinear upsampling uses half-pixel
centres and mirrors the grid at its border (scikit-image's ``resize(order=1, mode="reflect")``,
which the authors' code calls). :class:`RiseMasks` draws the grids and shifts once (a CPU generator
seeded with ``seed``, so the same seed gives the same masks on every device) and builds any range
of masks on demand; :func:`rise_masks` returns them all.

The masked forwards are batched on :meth:`~cnnviz_core.models.ModelHandle.batch_logits`
(BatchNorm folded, channels-last) under ``torch.inference_mode``, with progress after each batch,
the cancel token checked between batches and the model lock taken per batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

import torch

from ..errors import ParameterError
from ..progress import check_cancel, report
from .passes import PassContext
from .registry import Computed, Paper, Params, Product, integer, positive_int, register

P = Product


@dataclass(frozen=True)
class RISEParams(Params):
    """``masks`` random masks (paper: 4000 for ResNet-50), ``cells`` grid cells per side (the
    paper's ``s``, 7), ``p`` probability that a cell is kept (0.5), ``batch_size`` masked images
    per forward, ``seed`` of the masks."""

    masks: int = 4000
    cells: int = 7
    p: float = 0.5
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        self._set("masks", positive_int("masks", self.masks))
        self._set("cells", positive_int("cells", self.cells))
        self._set("batch_size", positive_int("batch_size", self.batch_size))
        try:
            p = float(self.p)
        except (TypeError, ValueError):
            raise ParameterError(f"p must be a probability in (0, 1], got {self.p!r}") from None
        if not 0 < p <= 1:
            raise ParameterError(f"p must be a probability in (0, 1], got {self.p!r}")
        self._set("p", p)
        self._set("seed", integer("seed", self.seed))


def _interpolation_matrix(out: int, cells: int) -> torch.Tensor:
    """``(out, cells + 2)``: linear interpolation of a ``cells``-long axis padded by one mirrored
    cell on each side (numpy/scikit-image ``reflect``: ``g1 | g0 g1 ... | g_{s-2}``) at the output
    pixels' centres, half-pixel convention: source coordinate ``(u + 0.5) * cells / out - 0.5``."""
    u = torch.arange(out, dtype=torch.float64)
    src = (u + 0.5) * cells / out - 0.5 + 1.0  # +1: index into the padded axis
    i0 = src.floor().long().clamp(0, cells)
    frac = src - i0
    m = torch.zeros(out, cells + 2, dtype=torch.float64)
    rows = torch.arange(out)
    m[rows, i0] += 1 - frac
    m[rows, i0 + 1] += frac
    return m


def _mirror_pad(grids: torch.Tensor) -> torch.Tensor:
    """Pad ``(N, s, s)`` grids by one cell, mirrored without repeating the edge (numpy ``reflect``);
    a 1-cell grid repeats its value."""
    if grids.shape[-1] == 1:
        return grids.expand(-1, 3, 3)
    return torch.nn.functional.pad(grids[:, None], (1, 1, 1, 1), mode="reflect")[:, 0]


class RiseMasks:
    """The RISE masks for inputs of ``size = (H, W)``: ``count`` binary ``cells x cells`` grids
    (each cell ``1`` with probability ``p``) and their random shifts, drawn once from a CPU
    generator seeded with ``seed``; :meth:`batch` builds masks ``start:stop`` as ``(n, H, W)``
    float tensors in [0, 1]. ``grids`` ``(count, cells, cells)`` and ``shifts`` ``(count, 2)`` (row,
    column offsets into the upsampled grid, each in ``[0, cell)``) are public for inspection."""

    def __init__(self, count: int, size: tuple[int, int], cells: int = 7, p: float = 0.5, seed: int = 0) -> None:
        h, w = int(size[0]), int(size[1])
        if cells > min(h, w):
            raise ParameterError(f"RISE needs cells <= the input's smaller side {min(h, w)}, got {cells}")
        self.size, self.cells, self.p, self.count = (h, w), cells, p, count
        self.cell = (math.ceil(h / cells), math.ceil(w / cells))
        self.upsampled = ((cells + 1) * self.cell[0], (cells + 1) * self.cell[1])
        gen = torch.Generator().manual_seed(seed)
        self.grids = (torch.rand((count, cells, cells), generator=gen) < p).to(torch.float32)
        self.shifts = torch.stack([torch.randint(0, self.cell[0], (count,), generator=gen),
                                   torch.randint(0, self.cell[1], (count,), generator=gen)], dim=1)
        self._rows = _interpolation_matrix(self.upsampled[0], cells).to(torch.float32)
        self._cols = _interpolation_matrix(self.upsampled[1], cells).to(torch.float32)

    def __len__(self) -> int:
        return self.count

    def batch(self, start: int, stop: int, device: Union[None, str, torch.device] = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Masks ``start:stop`` as ``(n, H, W)`` on ``device``: each grid upsampled bilinearly and
        cropped at its shift (only the cropped rows and columns are computed)."""
        h, w = self.size
        grids = _mirror_pad(self.grids[start:stop]).to(device=device, dtype=dtype)
        shifts = self.shifts[start:stop]
        rows = self._rows[shifts[:, 0, None] + torch.arange(h)].to(device=device, dtype=dtype)  # (n, H, s+2)
        cols = self._cols[shifts[:, 1, None] + torch.arange(w)].to(device=device, dtype=dtype)  # (n, W, s+2)
        return torch.einsum("nhi,nij,nwj->nhw", rows, grids, cols).clamp_(0, 1)


def rise_masks(count: int, size: tuple[int, int], cells: int = 7, p: float = 0.5, seed: int = 0, *,
               device: Union[None, str, torch.device] = None) -> torch.Tensor:
    """All ``count`` masks of :class:`RiseMasks` as one ``(count, H, W)`` tensor: the masks
    ``rise`` uses for the same ``size``, ``cells``, ``p`` and ``seed``."""
    return RiseMasks(count, size, cells, p, seed).batch(0, count, device)


@register("rise", display_name="RISE",
          paper=Paper("Petsiuk, Das & Saenko", 2018, "RISE: Randomized Input Sampling for Explanation of "
                      "Black-box Models", "https://arxiv.org/abs/1806.07421"),
          family="perturbation", passes=(P.LOGITS,), needs=("extra_forwards",), cost="masks forwards",
          class_discriminative=True, params=RISEParams, long_running=True)
def rise(ctx: PassContext, p: RISEParams) -> Computed:
    """RISE (Petsiuk et al. 2018, Eq. 6): ``S_c = (1 / (N p)) sum_i P_c(x * M_i) M_i`` over ``N = masks``
    random masks (:class:`RiseMasks`), ``P_c`` the target-class probability (softmax; per-class
    sigmoid for multi-label models). Masked-out pixels become 0 in the normalized input (the
    dataset's mean colour), as in the authors' code. Raw map ``(H, W)``, ``>= 0``, in probability
    units (the expected score when the pixel is kept); the API min-max scales it to [0, 1]."""
    target = ctx.resolved_target()
    masks = RiseMasks(p.masks, ctx.input_size, p.cells, p.p, p.seed)
    acc = torch.zeros(ctx.input_size, dtype=torch.float64, device=ctx.x.device)
    for start in range(0, p.masks, p.batch_size):
        check_cancel(ctx.cancel)
        stop = min(p.masks, start + p.batch_size)
        with torch.inference_mode():
            m = masks.batch(start, stop, ctx.x.device, ctx.x.dtype)
            probs = ctx.handle.probabilities(ctx.handle.batch_logits(ctx.x * m[:, None]))[:, target]
            acc += torch.einsum("n,nhw->hw", probs.to(acc.dtype), m.to(acc.dtype))
        report(ctx.progress, stop, p.masks, "RISE masks")
    info: dict[str, Any] = {"masks": p.masks, "cells": p.cells, "p": p.p, "seed": p.seed,
                            "cell_px": list(masks.cell)}
    return Computed(raw=(acc / (p.masks * p.p)).to(ctx.x.dtype), info=info)


__all__ = ["RISEParams", "RiseMasks", "rise", "rise_masks"]
