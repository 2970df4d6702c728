"""ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci 2022, "A Consistent and
Efficient Evaluation Strategy for Attribution Methods", ICML, https://arxiv.org/abs/2202.00449).

The ``q`` % most relevant pixels (MoRF) or least relevant pixels (LeRF) of the map are removed and
filled in by *noisy linear imputation* (Sec. 4): every removed pixel takes the weighted mean of its
8 neighbours (weight 1/6 for the 4 direct neighbours, 1/12 for the diagonal ones, renormalized at
the image border). That gives one sparse linear system over all removed pixels, solved for every
channel, plus Gaussian noise of std ``imputation_noise`` (normalized input units). The filled-in
values carry little trace of the removal mask, so the model cannot read the mask's shape (the
"class information leakage" of plain replacement), and MoRF and LeRF rank methods consistently.

The target's score after each removal gives the MoRF and LeRF curves. The value is
pytorch-grad-cam's ``ROADCombined``, ``(mean LeRF - mean MoRF) / 2`` over the removal levels: high
when removing unimportant pixels keeps the score and removing important ones destroys it.

Conventions are those of pytorch-grad-cam's ``ROADMostRelevantFirst`` / ``ROADLeastRelevantFirst``
(whose ``percentile=p`` removes ``100 - p`` % of the pixels). The number of removed pixels is the
count at or above numpy's linear-interpolated ``(100 - q)``-th percentile of a tie-free map. Pixels
are ranked by a stable sort, so ties (the many zeros of a ReLU'd map) are broken in raster order.
pgc's threshold removes every tied pixel at once instead, up to all of them, and its linear system
is then singular. The noise is drawn from one generator seeded with ``seed``, a ``(channels,
removed)`` standard normal draw per imputation: MoRF at each level, then LeRF at each level.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import spsolve

from ..progress import CancelToken, ProgressFn, check_cancel, report
from .causal import saliency_2d
from .registry import (Curve, MetricResult, Output, Paper, Params, check_input, choice, integer, positive_int,
                       real, real_tuple, register_metric, scores)

#: (row offset, column offset) -> weight of that neighbour in the imputation (Rong et al. 2022, Sec. 4).
NEIGHBOUR_WEIGHTS: tuple[tuple[tuple[int, int], float], ...] = (
    ((-1, -1), 1 / 12), ((-1, 0), 1 / 6), ((-1, 1), 1 / 12),
    ((0, -1), 1 / 6), ((0, 1), 1 / 6),
    ((1, -1), 1 / 12), ((1, 0), 1 / 6), ((1, 1), 1 / 12),
)


def linear_imputation(image: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free linear imputation of ``image`` ``(C, H, W)`` where ``keep`` ``(H, W)`` is False.

    Returns ``(filled, missing)``: the image with every missing pixel set to the solution of
    ``sum_j w_j * (x_i - x_j) = 0`` over its in-image neighbours ``j`` (known or missing), and the
    flat indices of the missing pixels (in raster order). ``keep`` must keep at least one pixel."""
    c, h, w = image.shape
    keep_flat = np.asarray(keep, bool).ravel()
    missing = np.flatnonzero(~keep_flat)
    filled = np.array(image, dtype=np.float64).reshape(c, -1)
    n = len(missing)
    if n == 0:
        return filled.reshape(c, h, w), missing
    if n == h * w:
        raise ValueError("linear imputation needs at least one known pixel")
    var = np.full(h * w, -1, dtype=np.int64)
    var[missing] = np.arange(n)
    r, col = np.divmod(missing, w)
    diag = np.zeros(n)
    rhs = np.zeros((n, c))
    rows, cols, vals = [], [], []
    for (dr, dc), weight in NEIGHBOUR_WEIGHTS:
        rr, cc = r + dr, col + dc
        inside = np.flatnonzero((rr >= 0) & (rr < h) & (cc >= 0) & (cc < w))
        j = rr[inside] * w + cc[inside]
        diag[inside] += weight
        known = keep_flat[j]
        rhs[inside[known]] += weight * filled[:, j[known]].T
        rows.append(inside[~known])
        cols.append(var[j[~known]])
        vals.append(np.full(int((~known).sum()), -weight))
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(diag)
    a = csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    solution = spsolve(a, rhs).reshape(n, c)
    filled[:, missing] = solution.T
    return filled.reshape(c, h, w), missing


def noisy_linear_imputation(image: torch.Tensor, keep: np.ndarray, noise: float,
                            generator: torch.Generator) -> torch.Tensor:
    """:func:`linear_imputation` of ``image`` ``(C, H, W)`` (any device) plus ``noise`` times
    standard normal draws from ``generator`` on the filled pixels; float32."""
    filled, missing = linear_imputation(image.detach().float().cpu().numpy(), keep)
    c = image.shape[0]
    out = torch.from_numpy(filled).float().reshape(c, -1)
    draw = torch.randn(c, len(missing), generator=generator)  # (C, removed), as pgc draws it
    out[:, torch.from_numpy(missing)] += noise * draw
    return out.reshape(image.shape).to(image.device)


def removal_count(n: int, q: float) -> int:
    """Pixels removed at level ``q`` % of ``n``: those at or above numpy's linear
    ``(100 - q)``-th percentile of ``n`` distinct values (pgc's rule on a tie-free map)."""
    ranks = np.arange(n, dtype=np.float64)
    return int(np.count_nonzero(ranks >= np.percentile(ranks, 100.0 - q)))


def keep_mask(saliency: np.ndarray, q: float, order: Literal["morf", "lerf"]) -> np.ndarray:
    """``(H, W)`` bool: True where a pixel is kept at removal level ``q`` in ``order``."""
    flat = saliency.ravel()
    k = removal_count(flat.size, q)
    ranked = np.argsort(-flat if order == "morf" else flat, kind="stable")
    keep = np.ones(flat.size, bool)
    keep[ranked[:k]] = False
    return keep.reshape(saliency.shape)


@dataclass(frozen=True)
class ROADParams(Params):
    """``percentages``: shares of pixels removed (0 < q < 100); ``imputation_noise``: std of the
    imputation noise (normalized input units, the paper's 0.01); ``output``: ``probability`` or
    ``logit`` score; ``seed`` of the noise; ``batch_size`` imputed images per forward."""

    percentages: tuple[float, ...] = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0)
    imputation_noise: float = 0.01
    output: str = "probability"
    seed: int = 0
    batch_size: int = 16

    def __post_init__(self) -> None:
        self._set("percentages", real_tuple("percentages", self.percentages, low=0.0, high=100.0))
        self._set("imputation_noise", real("imputation_noise", self.imputation_noise, low=0.0))
        self._set("output", choice("output", self.output, Output))
        self._set("seed", integer("seed", self.seed))
        self._set("batch_size", positive_int("batch_size", self.batch_size))


@register_metric(
    "road", display_name="ROAD (MoRF/LeRF)",
    paper=Paper("Rong, Leemann, Borisov, Kasneci & Kasneci", 2022,
                "A Consistent and Efficient Evaluation Strategy for Attribution Methods",
                "https://arxiv.org/abs/2202.00449"),
    reference="pytorch-grad-cam (ROADMostRelevantFirst / ROADLeastRelevantFirst, ROADCombined)",
    higher_is_better=True, value_range="[-1, 1] for probabilities",
    cost="1 + 2P forwards and 2P sparse solves (P = len(percentages), 9 by default)",
    needs=("forwards", "sparse_solve"), params=ROADParams, long_running=True,
)
def road(handle, x: torch.Tensor, saliency_map, target, params: ROADParams = ROADParams(),
         progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None, *, explain=None,
         mask=None) -> MetricResult:
    """ROAD with noisy linear imputation, most- and least-relevant first. Gradient maps ``(3, H, W)``
    are ranked by ``max_c |.|``. Value ``(mean LeRF - mean MoRF) / 2`` of the target's score;
    curves ``morf`` and ``lerf``: score after removing ``q`` % of the pixels."""
    x, s, target = check_input(handle, x, saliency_map, target)
    sal = saliency_2d(s.cpu()).numpy()
    levels = params.percentages
    generator = torch.Generator().manual_seed(params.seed)
    imputed = []
    jobs = [(order, q) for order in ("morf", "lerf") for q in levels]
    for i, (order, q) in enumerate(jobs):
        check_cancel(cancel)
        imputed.append(noisy_linear_imputation(x[0], keep_mask(sal, q, order), params.imputation_noise,
                                                generator))
        report(progress, i + 1, len(jobs) + 1, f"ROAD imputation {order} {q:g}%")
    batch = torch.cat([x, torch.stack(imputed)])
    out = []
    for first in range(0, len(batch), params.batch_size):
        check_cancel(cancel)
        out.append(scores(handle, handle.batch_logits(batch[first:first + params.batch_size]), target, params.output))
    values = torch.cat(out).numpy()
    original, morf, lerf = float(values[0]), values[1:1 + len(levels)], values[1 + len(levels):]
    report(progress, len(jobs) + 1, len(jobs) + 1, "ROAD forwards")
    label = "target probability" if params.output == "probability" else "target logit"
    qs = np.asarray(levels, dtype=np.float64)
    return MetricResult(
        "road", float((lerf.mean() - morf.mean()) / 2), True,
        curves={"morf": Curve(qs, morf, "% of pixels removed (most relevant first)", label),
                "lerf": Curve(qs, lerf, "% of pixels removed (least relevant first)", label)},
        details={"original": original, "morf_mean": float(morf.mean()), "lerf_mean": float(lerf.mean()),
                 "output": params.output})
