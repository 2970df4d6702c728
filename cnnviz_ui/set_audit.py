"""An in-process audit of the sidebar's uploaded image set with the sidebar's model (catalog or the
session's own), for the Applications page: the engine's :class:`~cnnviz_core.audit.worker.AuditWorker`
on batches, with progress and cancellation between batches.

The images are written as PNGs to a private temporary folder (0700) for the worker to read, and the
folder is deleted when the run ends, stopped or not; rows' ``path`` is then replaced by the image's
label in the set, so nothing about the server's disk is shown.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from cnnviz_core import ModelHandle
from cnnviz_core.progress import CancelToken, ProgressFn, report

from .image_set import SetImage

#: Metrics an uploaded set can have (no masks, so no pointing game).
SET_METRICS = ("deletion", "insertion")
BATCH = 4


def audit_image_set(handle: ModelHandle, images: Sequence[SetImage], methods: Sequence[str], *,
                    layer: Optional[str] = None, steps: int = 16, progress: Optional[ProgressFn] = None,
                    cancel: Optional[CancelToken] = None) -> pd.DataFrame:
    """Audit ``images`` with ``handle``: one row per image and method (the audit results schema)."""
    import pyarrow as pa

    from cnnviz_core.attribution import resolve_methods
    from cnnviz_core.audit.sources import AuditItem
    from cnnviz_core.audit.worker import AuditConfig, AuditWorker

    keys = tuple(m.key for m in resolve_methods(list(methods)))
    config = AuditConfig(model=handle.name, methods=keys, metrics=SET_METRICS, weights=None,
                         layer=layer or handle.default_layer or None, device=str(handle.device), target="predicted",
                         steps=steps)
    folder = tempfile.mkdtemp(prefix="cnnviz-audit-")
    os.chmod(folder, 0o700)
    labels: dict[str, str] = {}
    tables = []
    try:
        items = []
        for n, item in enumerate(images):
            path = Path(folder) / f"{n:04d}.png"
            item.image.save(path, format="PNG")
            labels[str(path)] = item.label
            items.append(AuditItem(str(path)))
        worker = AuditWorker(config, handle)
        total = len(items)
        report(progress, 0, total, "Auditing")
        for lo in range(0, total, BATCH):
            if cancel is not None:
                cancel.check()
            tables.append(worker([i.to_row() for i in items[lo:lo + BATCH]]))
            report(progress, min(lo + BATCH, total), total, "Auditing")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if not tables:
        return pd.DataFrame()
    df = pa.concat_tables(tables).to_pandas()
    df["path"] = df["path"].map(lambda p: labels.get(p, Path(p).name))
    df["error"] = df["error"].fillna("").astype(str).str.replace(folder, "", regex=False)
    return df
