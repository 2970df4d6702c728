"""The audit's results folder: Parquet parts written per batch, a manifest, resume and reading.

Layout of ``RESULTS/``::

    audit.json              what was audited (model, weights, layer, methods, metrics, steps...)
    part-<run>-<seq>.parquet one file per finished batch (rows of :data:`SCHEMA`)
    maps/<image-key>/<method>.npy   the maps, with --save-maps

Columns (:data:`SCHEMA`, one row per image and method): ``path``, ``method``, ``model``, ``layer``,
``label``/``label_name`` (ground truth, -1/"" when unknown), ``prediction``/``prediction_name``
(top-1), ``target``/``target_name`` (the class explained), ``score`` (its probability),
``deletion_auc``, ``insertion_auc``, ``pointing_hit`` (1.0 hit / 0.0 miss), ``energy_pointing``
(NaN when not computed: no mask, target not in the scene, metric not asked), ``seconds`` (this
row's share of the batch: method time + shares of the shared pass, decoding and metric forwards),
``status`` (``ok`` / ``failed``), ``error`` (the reason; a note on ok rows, e.g. mask unreadable),
``map_path`` (relative to the results folder, "" without ``--save-maps``).

A part is written to a temporary name and renamed (atomic), so a run killed at any moment leaves
only complete parts behind; a rerun reads the ``(path, method)`` pairs they hold and skips them,
and never writes a pair twice. :func:`read_results` reads a folder, one Parquet file or an
uploaded file-like object (what the Applications page gets) without importing torch.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Union

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ParameterError

SCHEMA = pa.schema([
    ("path", pa.string()), ("method", pa.string()), ("model", pa.string()), ("layer", pa.string()),
    ("label", pa.int32()), ("label_name", pa.string()),
    ("prediction", pa.int32()), ("prediction_name", pa.string()),
    ("target", pa.int32()), ("target_name", pa.string()), ("score", pa.float64()),
    ("deletion_auc", pa.float64()), ("insertion_auc", pa.float64()),
    ("pointing_hit", pa.float64()), ("energy_pointing", pa.float64()),
    ("seconds", pa.float64()), ("status", pa.string()), ("error", pa.string()), ("map_path", pa.string()),
])
COLUMNS = tuple(SCHEMA.names)
MANIFEST = "audit.json"
#: Manifest keys that must match to resume into an existing results folder.
RESUME_KEYS = ("model", "weights", "layer", "target", "steps")


def empty_row(path: str, method: str) -> dict[str, Any]:
    """A row with every column present (numbers NaN / -1, strings empty)."""
    row: dict[str, Any] = {name: "" for name in COLUMNS}
    for name in ("label", "prediction", "target"):
        row[name] = -1
    for name in ("score", "deletion_auc", "insertion_auc", "pointing_hit", "energy_pointing", "seconds"):
        row[name] = float("nan")
    row.update(path=path, method=method, status="ok")
    return row


def rows_to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    rows = list(rows)
    return pa.table({name: [r[name] for r in rows] for name in COLUMNS}, schema=SCHEMA)


def map_key(path: str) -> str:
    """Folder name of an image's maps: file stem + a short hash of the full path (unique)."""
    stem = Path(path).stem[:40] or "image"
    return f"{stem}-{hashlib.blake2b(path.encode(), digest_size=6).hexdigest()}"


class ResultsFolder:
    """Writer side of a results folder (one per run; parts named ``part-<run>-<seq>``)."""

    def __init__(self, out: Union[str, Path]) -> None:
        self.root = Path(out)
        if self.root.exists() and not self.root.is_dir():
            raise ParameterError(f"--out must be a folder, {out} is a file")
        self.root.mkdir(parents=True, exist_ok=True)
        # Unique per run, also for two runs of one process within the same second (no overwrites).
        self.run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._seq = 0

    def prepare(self, manifest: dict[str, Any]) -> None:
        """Write ``audit.json``, or check that an existing one describes the same audit."""
        path = self.root / MANIFEST
        if path.is_file():
            old = json.loads(path.read_text())
            for key in RESUME_KEYS:
                if old.get(key) != manifest.get(key):
                    raise ParameterError(f"{self.root} holds an audit with {key}={old.get(key)!r}, not "
                                         f"{manifest.get(key)!r}; use another --out folder")
            manifest = {**old, "methods": sorted(set(old.get("methods", [])) | set(manifest["methods"])),
                        "metrics": sorted(set(old.get("metrics", [])) | set(manifest["metrics"]))}
        _atomic_write(path, json.dumps(manifest, indent=1).encode())

    def parts(self) -> list[Path]:
        return sorted(self.root.glob("part-*.parquet"))

    def done(self) -> set[tuple[str, str]]:
        """``(path, method)`` pairs already written by earlier runs (unreadable parts are ignored)."""
        pairs: set[tuple[str, str]] = set()
        for part in self.parts():
            try:
                t = pq.read_table(part, columns=["path", "method"])
            except (OSError, pa.ArrowException):
                continue
            pairs.update(zip(t.column("path").to_pylist(), t.column("method").to_pylist()))
        return pairs

    def write(self, table: pa.Table) -> Path:
        """Write one part atomically; returns its path."""
        self._seq += 1
        path = self.root / f"part-{self.run_id}-{self._seq:05d}.parquet"
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(table.cast(SCHEMA), tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_results(source: Union[str, Path, bytes, BinaryIO]) -> "pa.Table":
    """All rows of a results folder (its parts), a single Parquet file, raw bytes or an uploaded
    file-like object, as one Arrow table of :data:`SCHEMA` (``.to_pandas()`` for a DataFrame)."""
    if isinstance(source, (str, Path)):
        p = Path(source)
        if p.is_dir():
            tables = []
            for part in sorted(p.glob("part-*.parquet")):
                try:
                    tables.append(pq.read_table(part).cast(SCHEMA))
                except (OSError, pa.ArrowException):
                    continue
            return pa.concat_tables(tables) if tables else SCHEMA.empty_table()
        if not p.is_file():
            raise ParameterError(f"no such results folder or Parquet file: {source}")
        source = p.read_bytes()
    data = source if isinstance(source, bytes) else source.read()
    try:
        table = pq.read_table(io.BytesIO(data))
    except (OSError, pa.ArrowException) as exc:
        raise ParameterError(f"not a Parquet results file: {exc}") from None
    missing = [c for c in ("path", "method", "status") if c not in table.column_names]
    if missing:
        raise ParameterError(f"not an audit results table: missing column(s) {', '.join(missing)}")
    return table


def read_manifest(folder: Union[str, Path]) -> dict[str, Any]:
    p = Path(folder) / MANIFEST
    return json.loads(p.read_text()) if p.is_file() else {}


def export_parquet(folder: Union[str, Path], dest: Union[str, Path]) -> Path:
    """Merge a results folder's parts into one Parquet file (to share or upload)."""
    pq.write_table(read_results(folder), dest)
    return Path(dest)


def method_summary(rows: Any) -> list[dict[str, Any]]:
    """Per method of ``rows`` (Arrow table or pandas DataFrame): images, failed rows, mean deletion
    / insertion AUC, pointing accuracy (mean hit over the images with a mask; ``pointing_n`` of
    them), mean energy pointing and mean seconds (NaN-aware, failed rows left out)."""
    df = rows.to_pandas() if isinstance(rows, pa.Table) else rows
    out = []
    for method, group in df.groupby("method", sort=False):
        ok = group[group["status"] == "ok"]
        out.append({
            "method": method, "images": int(group["path"].nunique()), "failed": int(len(group) - len(ok)),
            "deletion_auc": float(ok["deletion_auc"].mean()), "insertion_auc": float(ok["insertion_auc"].mean()),
            "pointing_acc": float(ok["pointing_hit"].mean()), "pointing_n": int(ok["pointing_hit"].notna().sum()),
            "energy_pointing": float(ok["energy_pointing"].mean()), "seconds": float(ok["seconds"].mean()),
        })
    return out
