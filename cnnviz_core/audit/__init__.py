"""Audit at scale: explanations and faithfulness metrics over whole image sets.

``python -m cnnviz_core audit IMAGES --model NAME --methods a,b --out RESULTS`` (see
:mod:`cnnviz_core.cli.audit_cmd`). Parts: :mod:`.sources` (what to audit), :mod:`.batched` (one
shared forward/backward per batch), :mod:`.faithfulness` (deletion/insertion AUC, pointing games,
batched), :mod:`.worker` (one model per worker), :mod:`.runner` (Ray Data or in-process),
:mod:`.results` (Parquet parts, resume, reading), :mod:`.bench` (throughput figures).

This package imports nothing heavy on import: :mod:`.results` (pyarrow only) is what the dashboard
reads results with; the runner imports torch, and Ray only when it runs on Ray.
"""
from __future__ import annotations

from .results import COLUMNS, method_summary, read_results

__all__ = ["COLUMNS", "method_summary", "read_results", "run_audit", "list_images", "AuditConfig"]


def __getattr__(name: str):
    if name == "run_audit":
        from .runner import run_audit

        return run_audit
    if name == "AuditConfig":
        from .worker import AuditConfig

        return AuditConfig
    if name == "list_images":
        from .sources import list_images

        return list_images
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
