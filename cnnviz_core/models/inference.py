"""A faster twin of a model for batched forwards without gradients (Score-CAM, occlusion, metrics).

Two exact rewrites (up to float rounding) that pay off on batches:

* eval-mode BatchNorm folded into the convolution before it (``w' = w * g / sqrt(v + eps)``,
  ``b' = (b - m) * g / sqrt(v + eps) + beta``), done by ``torch.fx.experimental.optimization.fuse``
  on a *copy* - the shared model, its modules and its hooks are never touched;
* inputs in channels-last memory format, the layout oneDNN's CPU convolutions prefer.

On CPU a third candidate is tried: the folded module traced, frozen and rewritten by
``torch.jit.optimize_for_inference`` (weights pre-packed for oneDNN, convolution + ReLU fused). It is
kept only when its logits match and it is faster than the eager twin on a probe batch (timed at
build, fastest of two interleaved rounds): the choice is per model, as the gain is. ``torch.jit`` is deprecated in favour of ``torch.compile``;
here the trace is built in about a second where Inductor with freezing took 33 s and ran slower
(ResNet-18, 112 px: 69 against 62 ms), and a torch without ``torch.jit`` simply keeps the eager twin. Traced graphs
may bake in an input size, so every new input shape is checked once against the eager twin on its
first image; a shape that does not match uses the model itself from then on (the eager copy is
not kept beside the trace, so memory stays at one extra copy of the weights).

Measured on 2 CPU cores, 16 images, median of 5 interleaved rounds (2026-12-02), plain model /
eager twin / frozen twin:
ResNet-50 224 px 1112 / 714 / 626 ms; ResNet-18 224 px 357 / 254 / 226 ms; ResNet-18 112 px
97 / 84 / 61 ms; DenseNet-121 112 px 250 / 188 / 213 ms (eager kept); VGG-16 (no BatchNorm, so
no folded copy; its frozen trace fails) 688 / 549 ms with channels-last only.

The twin is used only if its logits match the model's on a probe batch; a model that cannot be
traced (data-dependent control flow) or does not match keeps using itself. Hooks registered on the
shared model do not fire in the twin, so callers that need hooks use the model.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
import warnings
from typing import Callable, Optional

import torch
import torch.fx
from torch import nn

log = logging.getLogger(__name__)


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def fused_twin(model: nn.Module, probe: torch.Tensor) -> tuple[nn.Module, str]:
    """``(module, how)``: a BatchNorm-folded copy of ``model`` when that is possible and matches
    ``model`` on ``probe`` (``how == "bn-folded"``), else ``model`` itself with the reason."""
    if not _has_batchnorm(model):
        return model, "no BatchNorm to fold"
    try:
        from torch.fx.experimental.optimization import fuse

        twin = fuse(copy.deepcopy(model).eval(), inplace=True)
        with torch.inference_mode():
            want, got = model(probe), twin(probe)
    except Exception as exc:  # noqa: BLE001 - any trace failure means: use the model itself
        log.info("no fused twin: %s", exc)
        return model, f"not traceable ({type(exc).__name__})"
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return model, "twin output differs in type or shape"
    if not _matches(got, want):
        return model, f"twin logits differ by {float((got - want).abs().max()):.3g}"
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin, "bn-folded"


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory format when it is a 4-D image batch (a no-op otherwise)."""
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


def _without_hooks(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every module hook dropped (a trace would record hook code)."""
    twin = copy.deepcopy(model).eval()
    for m in twin.modules():
        for hooks in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks):
            hooks.clear()
    return twin


def frozen_twin(module: nn.Module, probe: torch.Tensor) -> tuple[Optional[nn.Module], str]:
    """``(module, "frozen")``: ``module`` traced on ``probe``, frozen and optimized for inference
    (CPU, oneDNN), when that works and its logits match ``module``'s; else ``(None, reason)``."""
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still the fastest here
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the logits are checked below
            traced = torch.jit.trace(_without_hooks(module), probe, check_trace=False)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
            want, got = module(probe), frozen(channels_last(probe))
    except Exception as exc:  # noqa: BLE001 - any trace/freeze failure means: keep the eager twin
        log.info("no frozen twin: %s", exc)
        return None, f"not frozen ({type(exc).__name__})"
    if not _matches(got, want):
        return None, "frozen logits differ"
    try:  # a trace that baked in the probe's batch size fails (or differs) on another one
        other = torch.cat([probe, probe[:1]])
        with torch.no_grad():
            if not _matches(frozen(channels_last(other)), module(other)):
                return None, "frozen trace is fixed to one batch size"
    except Exception as exc:  # noqa: BLE001
        return None, f"frozen trace is fixed to one batch size ({type(exc).__name__})"
    return frozen, "frozen"


def _fx_traceable(model: nn.Module) -> bool:
    """Whether ``torch.fx`` traces ``model`` symbolically (so its forward has no data-dependent
    Python control flow, which a ``torch.jit.trace`` would silently bake in)."""
    try:
        torch.fx.symbolic_trace(_without_hooks(model))
    except Exception:  # noqa: BLE001
        return False
    return True


def _matches(got: object, want: torch.Tensor) -> bool:
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return False
    scale = float(want.abs().max()) or 1.0
    return torch.allclose(got, want, rtol=1e-3, atol=1e-4 * scale)


def _fastest(candidates: dict[str, Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor) -> str:
    """Key of the fastest candidate on ``x``: best of two rounds, run in alternating order."""
    best = {k: float("inf") for k in candidates}
    with torch.inference_mode():
        for order in (list(candidates), list(reversed(candidates))):
            for k in order:
                start = time.perf_counter()
                candidates[k](x)
                best[k] = min(best[k], time.perf_counter() - start)
    return min(best, key=best.__getitem__)


class InferenceTwin:
    """Lazily built, once per model: call ``twin(x)`` for logits of a batch (no gradients).

    Thread safety: the shared ``model`` is only run under ``lock`` (the model's lock: other calls
    register hooks on it). The twin is built from a hook-free copy taken under that lock, by one
    thread at a time (its own build lock), and a private twin (the folded copy or the frozen trace)
    runs WITHOUT the model's lock, so a long job's batches never make short requests on the same
    model wait; only a twin that is the model itself (nothing to fold) takes the lock."""

    def __init__(self, model: nn.Module, input_size: int, device: torch.device,
                 probe: Optional[torch.Tensor] = None, lock: Optional[threading.RLock] = None) -> None:
        """``probe``: a batch like the ones to come (default: 2 random images of ``input_size``);
        a twin of the part of a network after a layer is probed with that layer's activations.
        ``lock``: the lock that guards ``model`` (default: a private one)."""
        self._model = model
        self._input_size = input_size
        self._device = device
        self._probe = probe
        self._lock = lock if lock is not None else threading.RLock()
        self._build_lock = threading.Lock()
        self._module: Optional[nn.Module] = None
        self._private = False  # whether _module is our own copy (runs without the model's lock)
        self._frozen: Optional[nn.Module] = None
        self._frozen_shapes: dict[tuple[int, ...], bool] = {}
        self._frozen_bytes = 0
        self.how = "not built yet"
        #: ``eager`` (the module, channels-last inputs) or ``frozen`` (its optimized TorchScript trace).
        self.engine = "eager"

    @property
    def built(self) -> Optional[nn.Module]:
        """The twin module once built, else None (never builds it)."""
        return self._module

    @property
    def frozen_nbytes(self) -> int:
        """Bytes of the frozen trace's pre-packed weights (those of the module it was traced from), 0
        without one."""
        return self._frozen_bytes

    def module(self) -> nn.Module:
        if self._module is None:
            with self._build_lock:
                if self._module is None:
                    self._build()
        assert self._module is not None
        return self._module

    def _build(self) -> None:
        probe = self._probe
        if probe is None:
            gen = torch.Generator().manual_seed(0)
            probe = torch.randn(2, 3, self._input_size, self._input_size, generator=gen).to(self._device)
        self._probe = None
        with self._lock:
            copy_ = _without_hooks(self._model)
        for p in copy_.parameters():
            p.requires_grad_(False)
        twin, how = fused_twin(copy_, probe)
        frozen: Optional[nn.Module] = None
        engine = f"eager ({how})"
        if self._device.type == "cpu" and (how == "bn-folded" or (how == "no BatchNorm to fold" and _fx_traceable(twin))):
            # a trace records one path through Python control flow; only a graph torch.fx could
            # trace symbolically (no data-dependent branches) is safe to freeze
            frozen, engine = self._choose_engine(twin, probe)
        self.how, self.engine = how, engine
        if frozen is not None:  # the eager copy is dropped: the model itself answers shapes the trace cannot
            self._frozen, self._frozen_bytes = frozen, _nbytes(twin)
            self._frozen_shapes[tuple(probe.shape[1:])] = True
            self._module, self._private = self._model, False
        elif how == "bn-folded":
            self._module, self._private = twin, True
        else:  # nothing folded: no second copy of the weights is kept
            self._module, self._private = self._model, False

    @staticmethod
    def _choose_engine(eager: nn.Module, probe: torch.Tensor) -> tuple[Optional[nn.Module], str]:
        frozen, why = frozen_twin(eager, probe)
        if frozen is None:
            return None, f"eager ({why})"
        batch = probe.repeat(2, 1, 1, 1)
        pick = _fastest({"eager": lambda t: eager(channels_last(t)), "frozen": lambda t: frozen(channels_last(t))},
                        batch)
        return (frozen, "frozen") if pick == "frozen" else (None, "eager (faster than its frozen trace)")

    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        module = self.module()
        if self._private:
            return module(channels_last(x))
        with self._lock:
            return module(channels_last(x))

    def _frozen_for(self, x: torch.Tensor) -> Optional[nn.Module]:
        """The frozen trace if it is right for ``x``'s image shape (checked once per shape)."""
        if self._frozen is None or x.ndim != 4:
            return None
        shape = tuple(x.shape[1:])
        if shape not in self._frozen_shapes:
            try:
                got = self._frozen(channels_last(x[:1]))
                self._frozen_shapes[shape] = _matches(got, self._eager(x[:1]))
            except Exception as exc:  # noqa: BLE001 - a shape the trace cannot take: eager for it
                log.info("frozen twin refuses shape %s: %s", shape, exc)
                self._frozen_shapes[shape] = False
        return self._frozen if self._frozen_shapes[shape] else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            self.module()
            frozen = self._frozen_for(x)
            if frozen is not None:
                out = frozen(channels_last(x))
                if isinstance(out, torch.Tensor) and out.shape[:1] == x.shape[:1]:
                    return out
                self._frozen_shapes[tuple(x.shape[1:])] = False
            return self._eager(x)


def _nbytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
