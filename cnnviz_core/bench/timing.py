"""Interleaved, repeated timing: medians with their spread, and ratios of medians.

Every compared case runs ``repeats`` times in rounds; round ``r`` runs the cases in their given order
when ``r`` is even and in reverse order when it is odd (A B, B A, A B, ...), so a slow drift of the
machine (another process starting, thermal throttling) weighs on every case alike and no case always
runs first or last. Each round gets a freshly perturbed input (``x + jitter * noise``, the same for
every case of that round), so no cache can answer and both sides of a pair see the same input.
Reported: the median, ``[min-max]`` and ``n`` of each case; a pair's ratio is the ratio of medians.
"""
from __future__ import annotations

import contextlib
import io
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import torch

Clock = Callable[[], float]


@dataclass(frozen=True)
class Timing:
    """Seconds of the timed runs of one case, in run order."""

    samples: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def lo(self) -> float:
        return min(self.samples)

    @property
    def hi(self) -> float:
        return max(self.samples)

    def fmt(self, unit: str = "auto") -> str:
        """``"12.3 ms [11.9-13.0, n=5]"`` (``unit``: ``"ms"``, ``"s"`` or ``"auto"``: s from 10 s on)."""
        if unit == "auto":
            unit = "s" if self.median >= 10 else "ms"
        scale, digits = (1.0, 2) if unit == "s" else (1000.0, 1)
        med, lo, hi = (f"{v * scale:.{digits}f}" for v in (self.median, self.lo, self.hi))
        return f"{med} {unit} [{lo}-{hi}, n={self.n}]"

    def as_dict(self) -> dict[str, object]:
        return {"median_s": self.median, "min_s": self.lo, "max_s": self.hi, "n": self.n,
                "samples_s": list(self.samples)}


def round_order(names: Sequence[str], round_index: int) -> list[str]:
    """The order of the cases in round ``round_index``: as given when even, reversed when odd."""
    return list(names) if round_index % 2 == 0 else list(reversed(names))


def interleaved(cases: Mapping[str, Callable[[torch.Tensor], object]], x: torch.Tensor, repeats: int, *,
                warmup: int = 1, jitter: float = 1e-3, seed: int = 0, clock: Clock = time.perf_counter,
                quiet: bool = True, progress: Optional[Callable[[str], None]] = None) -> dict[str, Timing]:
    """Time every case ``repeats`` times, interleaved in alternating order (see the module doc).

    ``warmup`` untimed rounds come first (in the given order). ``quiet``: stderr written by a case
    (the reference libraries' tqdm bars) is swallowed. ``progress(line)`` is called after each
    timed run. ``clock`` is injectable for tests."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(cases)
    gen = torch.Generator().manual_seed(seed)

    def perturbed() -> torch.Tensor:
        return x + jitter * torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device) if jitter else x

    def call(name: str, xr: torch.Tensor) -> float:
        sink = contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext()
        with sink:
            start = clock()
            cases[name](xr)
            return clock() - start

    for _ in range(warmup):
        xr = perturbed()
        for name in names:
            call(name, xr)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        xr = perturbed()
        for name in round_order(names, r):
            times[name].append(call(name, xr))
            if progress is not None:
                progress(f"    round {r + 1}/{repeats}: {name} {times[name][-1]:.2f} s")
    return {name: Timing(tuple(v)) for name, v in times.items()}


def medians(timings: Mapping[str, Timing]) -> dict[str, float]:
    return {k: t.median for k, t in timings.items()}


def ratio(numerator: Timing, denominator: Timing) -> float:
    """Ratio of medians ``numerator / denominator``."""
    return numerator.median / denominator.median
