"""Attribution benchmark: ``python -m cnnviz_core.bench [--models resnet50,vgg16] [--repeats 7] [--quick]``.

One process, random weights, CPU (``--threads``, default 2). Every compared case is timed by
:func:`~.timing.interleaved`: rounds in alternating order (A B, B A, A B, ...), each round on a freshly
perturbed input shared by the cases of the round; printed: the median with its spread
``[min-max, n=...]`` for every side, and ratios of medians. Sections (``--sections``, default all):

* ``models`` (:mod:`.models_bench`, on ``--models`` at ``--size``, ``--repeats`` rounds after one
  warm-up round): forward, CAM floor and input floor; ``gradcam`` against pytorch-grad-cam ("pgc",
  used as its README shows: one object per method, on a deep copy whose parameters require grad) and
  Captum; the compare-six request against pgc's six objects; the "compare all gradient-CAM variants"
  request (every CAM-family method that only needs the shared pass's gradients, read from the
  registry) against the input floor (goal <= 1.35x); Ablation-CAM against pgc (``--slow-repeats``
  rounds; with ``--skip-slow-references`` pgc ablates 10 % of the channels and its times are
  multiplied by 10, labelled) beside ours Score-CAM top-64; peak memory of compare-six against
  the input floor.
* ``perturbation`` (:mod:`.perturbation_bench`, on ``--perturb-model`` at ``--perturb-size``, layer
  ``--perturb-layer``, ``--perturb-repeats`` rounds): every perturbation method of the registry
  against its reference library at the same number of forwards and the same batch (goal >= 1.5x).
* ``scorecam``: exact Score-CAM (all channels), ours vs pgc, batch ``--scorecam-batch`` (16) on both
  sides, ``--scorecam-repeats`` rounds on ``--scorecam-model`` at ``--scorecam-size``.

``--quick``: resnet18, 3 repeats, slow references skipped, no exact Score-CAM.

Peak memory: each measured call runs in a fresh subprocess (model and input built first); the heap is
trimmed (``malloc_trim``) and the kernel's peak-RSS mark reset (``/proc/self/clear_refs`` = 5), then
the figure is ``VmHWM`` after the call minus ``VmRSS`` before it; median of 3 processes (Linux).
(``ru_maxrss`` cannot be reset and is dominated by model construction; torch's CPU allocator has no
peak counter.)
``--units`` runs the unit benches of :mod:`cnnviz_core.attribution.unitbench` instead.
``--pointing-game N`` prints the pointing-game table of shapes-cnn on N held-out two-object scenes.
"""
from __future__ import annotations

from ..attribution import explain
from .cli import main, parser, pointing_game
from .models_bench import (PGC_SIX, SIX, VariantsRequest, bench_model, cam_floor, gradient_cam_variants, input_floor,
                           interleaved_medians, measured_memory, memory_probe, reference_cases, reference_model,
                           reset_peak_rss, slow_cases)
from .perturbation_bench import (ForwardCounter, PairResult, Unavailable, make_env, perturbation_bench,
                                 perturbation_methods, run_pair, scorecam_comparison)
from .timing import Timing, interleaved, medians, ratio, round_order

__all__ = ["PGC_SIX", "SIX", "ForwardCounter", "PairResult", "Timing", "Unavailable", "VariantsRequest", "bench_model",
           "cam_floor", "explain", "gradient_cam_variants", "input_floor", "interleaved", "interleaved_medians", "main",
           "make_env", "measured_memory", "medians", "memory_probe", "parser", "perturbation_bench",
           "perturbation_methods", "pointing_game", "ratio", "reference_cases", "reference_model", "reset_peak_rss",
           "round_order", "run_pair", "scorecam_comparison", "slow_cases"]
