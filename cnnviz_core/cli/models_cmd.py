"""``models [--json]``: every catalog model with its readiness."""
from __future__ import annotations

import argparse

from ..models import entries
from .common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list catalog models and whether their weights are ready "
                                      "(any torchvision classifier and timm:NAME also load by name)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    for entry in entries():
        arch, ready = entry.architecture, entry.readiness()
        rows.append({
            "name": arch.name, "display_name": arch.display_name, "origin": arch.origin,
            "status": ready.status, "detail": ready.detail, "download_mb": ready.download_mb,
            "input_size": arch.preprocessing.input_size, "classes": arch.num_classes,
            "default_layer": arch.default_layer, "params": arch.facts.get("params"), "gflops": arch.facts.get("gflops"),
            "acc1": arch.facts.get("acc1"), "acc5": arch.facts.get("acc5"),
        })
    if args.json:
        print_json(rows)
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        extra = f" ({r['download_mb']:.0f} MB)" if r["status"] == "needs download" else ""
        print(f"{r['name']:<{width}}  {r['status'] + extra:<26}  {r['origin']:<11}  layer={r['default_layer']}")
    return 0
