"""``methods [--json | --markdown]``: every registered attribution method and metric, from the registries.

Plain: one line per method (key, family, cost, slow mark, parameters with defaults). ``--json``: the
same as objects. ``--markdown``: the README's method table (method, key, family, paper, reference
library, parity figure, cost), so the README never lists methods by hand.
"""
from __future__ import annotations

import argparse
from typing import Any

from .common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("methods", help="list the attribution methods and metrics (from the registries)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print as JSON")
    fmt.add_argument("--markdown", action="store_true", help="print the README's method table")
    p.set_defaults(func=run)


def method_rows() -> list[dict[str, Any]]:
    """One dict per registered method, in registry order."""
    from ..attribution import METHODS
    from ..attribution.parity_figures import PARITY

    return [{"key": m.key, "name": m.display_name, "family": m.family, "cost": m.cost, "slow": m.long_running,
             "needs": list(m.needs), "params": {k: v for k, v in m.params.items()},
             "paper": m.paper.cite(), "paper_short": f"{m.paper.authors} {m.paper.year}", "link": m.paper.link,
             "reference": PARITY.get(m.key, (m.reference, ""))[0] or m.reference,
             "parity": PARITY.get(m.key, ("", ""))[1]} for m in METHODS.values()]


def metric_rows() -> list[dict[str, Any]]:
    """One dict per registered metric (empty when the metric registry is not there)."""
    try:
        from ..metrics.registry import METRICS
    except ImportError:  # pragma: no cover - the registry is part of the package
        return []
    rows = []
    for m in METRICS.values():
        paper = getattr(m, "paper", None)
        rows.append({"key": m.key, "name": getattr(m, "display_name", m.key),
                     "paper": paper.cite() if hasattr(paper, "cite") else str(paper or ""),
                     "reference": getattr(m, "reference", ""), "cost": getattr(m, "cost", "")})
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    from ..attribution.registry import FAMILIES

    lines = ["| Method | key | family | paper | reference library | parity | cost |", "|---|---|---|---|---|---|---|"]
    for family in FAMILIES:
        for r in (r for r in rows if r["family"] == family):
            slow = " ⏱" if r["slow"] else ""
            lines.append(f"| {r['name']}{slow} | `{r['key']}` | {family} | [{r['paper_short']}]({r['link']}) | "
                         f"{r['reference'] or '—'} | {r['parity'] or '—'} | {r['cost']} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rows = method_rows()
    if args.json:
        print_json({"methods": rows, "metrics": metric_rows()})
    elif args.markdown:
        print(markdown_table(rows))
    else:
        for r in rows:
            params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
            print(f"{r['key']:<22} {r['family']:<12} {r['cost']:<32}{' slow' if r['slow'] else '     '}  {params}")
        metrics = metric_rows()
        if metrics:
            print("metrics: " + ", ".join(m["key"] for m in metrics))
    return 0
