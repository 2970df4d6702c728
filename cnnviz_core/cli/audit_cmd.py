"""``python -m cnnviz_core audit IMAGES --model NAME --methods a,b --out RESULTS ...``.

Explains every image with every method and scores the maps (deletion/insertion AUC, pointing
game), on Ray Data when installed (local instance, or ``--ray-address``), else in-process
(``--no-ray``). Results: Parquet parts in ``RESULTS/`` (resumable; see :mod:`cnnviz_core.audit`).
Prints a per-method summary; ``--json`` prints it as JSON. Exit code 0 even when some images
failed (they are rows with ``status=failed``).
"""
from __future__ import annotations

import argparse
import math
import sys

from ..audit.faithfulness import METRICS
from ..audit.results import method_summary, read_results
from ..audit.runner import AuditSummary, run_audit
from ..audit.sources import list_images
from ..audit.worker import TARGET_MODES, AuditConfig
from .common import add_model_args, model_options, print_json, weights_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="explain and score a whole image set (Parquet results, Ray or in-process)")
    p.add_argument("images", metavar="IMAGES", help="folder, glob (quote it), image file, or scenes folder (scenes.json)")
    add_model_args(p)
    p.add_argument("--methods", default="gradcam", help="comma list of attribution methods (default gradcam)")
    p.add_argument("--metrics", default="deletion,insertion",
                   help=f"comma list of {', '.join(METRICS)} (pointing needs masks: scenes or --masks)")
    p.add_argument("--out", required=True, help="results folder (created; rerun to resume)")
    p.add_argument("--masks", help="folder of masks NAME.mask.png or NAME.png for the pointing game")
    p.add_argument("--layer", help="CAM layer (default: the model's)")
    p.add_argument("--target", default="auto", choices=TARGET_MODES,
                   help="class explained: auto = ground-truth label when known, else top-1 prediction")
    p.add_argument("--steps", type=int, default=16, help="deletion/insertion steps (default 16)")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch (default 16)")
    p.add_argument("--limit", type=int, help="audit only the first N images")
    p.add_argument("--workers", type=int, default=1, help="Ray actors, each with its own model copy (default 1)")
    p.add_argument("--ray-address", help="connect to an existing Ray cluster (default: a local instance)")
    p.add_argument("--no-ray", action="store_true", help="plain in-process batches (no Ray)")
    p.add_argument("--save-maps", action="store_true", help="also write RESULTS/_maps/<image>/<method>.npy")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    items = list_images(args.images, masks=args.masks, limit=args.limit)
    config = AuditConfig(model=args.model, methods=tuple(args.methods.split(",")),
                         metrics=tuple(args.metrics.split(",")), weights=weights_arg(args.weights),
                         layer=args.layer, device=args.device, target=args.target, steps=args.steps,
                         options=model_options(args))
    if args.no_ray and args.workers > 1:
        sys.stderr.write("note: --workers needs Ray; --no-ray runs one in-process worker\n")
    summary = run_audit(items, config, args.out, use_ray=False if args.no_ray else None,
                        ray_address=args.ray_address, workers=args.workers, batch_size=args.batch_size,
                        save_maps=args.save_maps, progress=not args.quiet)
    methods = method_summary(read_results(args.out))
    if args.json:
        print_json({"run": {**vars(summary), "images_per_second": summary.images_per_second},
                    "methods": methods})
        return 0
    _print(summary, methods)
    return 0


def _fmt(value: float, pattern: str = "{:.3f}") -> str:
    return "-" if value is None or math.isnan(value) else pattern.format(value)


def _print(summary: AuditSummary, methods: list[dict]) -> None:
    print(f"{summary.out}: {summary.processed} images audited now ({summary.skipped} already done), "
          f"{summary.rows_ok} rows ok, {summary.rows_failed} failed, {summary.seconds:.1f} s, "
          f"{summary.images_per_second:.2f} images/s, {summary.backend} x{summary.workers}")
    print(f"{'method':<22}{'images':>7}{'failed':>7}{'deletion':>10}{'insertion':>10}{'pointing':>10}"
          f"{'energy':>8}{'s/img':>8}")
    for m in methods:
        print(f"{m['method']:<22}{m['images']:>7}{m['failed']:>7}{_fmt(m['deletion_auc']):>10}"
              f"{_fmt(m['insertion_auc']):>10}{_fmt(m['pointing_acc'], '{:.1%}'):>10}"
              f"{_fmt(m['energy_pointing']):>8}{_fmt(m['seconds'], '{:.2f}'):>8}")
