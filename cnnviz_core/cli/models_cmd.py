"""``models [--json]``: every registered model with its readiness."""
from __future__ import annotations

import argparse

from ..models import list_specs, readiness
from .common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models and whether their weights are ready")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    for spec in list_specs():
        ready = readiness(spec)
        rows.append({
            "name": spec.name, "display_name": spec.display_name, "family": spec.family,
            "status": ready.status, "detail": ready.detail, "download_mb": ready.download_mb,
            "input_size": spec.input_size, "classes": len(spec.class_names), "default_layer": spec.default_layer,
            "params": spec.facts.get("params"), "gflops": spec.facts.get("gflops"),
            "acc1": spec.facts.get("acc1"), "acc5": spec.facts.get("acc5"),
        })
    if args.json:
        print_json(rows)
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        extra = f" ({r['download_mb']:.0f} MB)" if r["status"] == "needs download" else ""
        print(f"{r['name']:<{width}}  {r['status'] + extra:<26}  {r['family']:<8}  layer={r['default_layer']}")
    return 0
