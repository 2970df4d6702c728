"""The audit's results folder: Parquet parts written per batch, a manifest, resume and reading.

Layout of ``RESULTS/``::

    _audit.json              what was audited (model, weights, layer, methods, metrics, steps...)
    part-<run>-<seq>.parquet one file per finished batch (rows of :data:`SCHEMA`)
    _maps/<image-key>/<method>.npy   the maps, with --save-maps

The folder is a standard Parquet dataset: everything that is not a part starts with ``_`` or ``.``,
names that dataset readers skip, so ``pandas.read_parquet(RESULTS)``,
``pyarrow.dataset.dataset(RESULTS)``, ``ray.data.read_parquet(RESULTS)`` and DuckDB's
``read_parquet('RESULTS/*.parquet')`` read it as it is. Folders written before that (``audit.json``,
``maps/``) are still read here (:func:`read_manifest`, the rows' ``map_path``); resuming into one
renames its manifest to ``_audit.json``.

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
from typing import Any, BinaryIO, Iterable, Optional, Sequence, Union

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import ParameterError
from ..paths import is_within

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
MANIFEST = "_audit.json"
#: The manifest's name in folders written by earlier versions (read, and renamed on resume).
LEGACY_MANIFEST = "audit.json"
#: Where ``--save-maps`` writes (``_``: skipped by Parquet dataset readers; earlier versions: ``maps``).
MAPS_DIR = "_maps"
#: Manifest keys that must match to resume into an existing results folder.
RESUME_KEYS = ("model", "weights", "layer", "target", "steps", "options", "model_identity")


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
        """Write ``_audit.json``, or check that an existing manifest describes the same audit (an old
        folder's ``audit.json`` is then replaced by ``_audit.json``)."""
        path = self.root / MANIFEST
        found = manifest_path(self.root)
        if found is not None:
            old = json.loads(found.read_text())
            for key in RESUME_KEYS:
                if key == "model_identity" and key not in old:  # written since 0.2: older folders lack it
                    continue
                if old.get(key) != manifest.get(key):
                    raise ParameterError(f"{self.root} holds an audit with {key}={old.get(key)!r}, not "
                                         f"{manifest.get(key)!r}; use another --out folder")
            manifest = {**old, "methods": sorted(set(old.get("methods", [])) | set(manifest["methods"])),
                        "metrics": sorted(set(old.get("metrics", [])) | set(manifest["metrics"]))}
        _atomic_write(path, json.dumps(manifest, indent=1).encode())
        legacy = self.root / LEGACY_MANIFEST
        if legacy.is_file():
            legacy.unlink(missing_ok=True)  # its content is in _audit.json now; it would stop dataset readers

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


#: Bounds on what :func:`read_results` reads (a hostile file is refused in one line, not decoded).
MAX_RESULTS_BYTES = 200 * 2**20   # Parquet bytes: one file, one upload, or all parts of a folder
MAX_RESULTS_ROWS = 500_000        # 100,000 images x 5 methods
MAX_TEXT_CHARS = 10_000           # bytes of one string cell (a path, a class name, an error message)
MAX_TEXT_BYTES = 256 * 2**20      # all string cells once decoded (dictionary-encoded text can expand)
REQUIRED = ("path", "method", "status")


def read_results(source: Union[str, Path, bytes, BinaryIO], *,
                 roots: Optional[Sequence[Path]] = None) -> "pa.Table":
    """All rows of a results folder (its parts), a single Parquet file, raw bytes or an uploaded
    file-like object, as one Arrow table of :data:`SCHEMA` (``.to_pandas()`` for a DataFrame).

    Every table is checked before it is decoded: at most :data:`MAX_RESULTS_BYTES` bytes and
    :data:`MAX_RESULTS_ROWS` rows, the :data:`REQUIRED` columns present, every :data:`SCHEMA` column
    of a compatible type (missing ones are filled with :func:`empty_row`'s defaults, extra ones
    ignored), no string longer than :data:`MAX_TEXT_CHARS`. Nulls become "" / -1 (NaN for floats).
    ``roots``: when given, parts of a folder that resolve outside them (symlinks) are skipped.
    Raises :class:`ParameterError` with one line otherwise.
    """
    if isinstance(source, (str, Path)):
        p = Path(source)
        if p.is_dir():
            parts = [q for q in sorted(p.glob("part-*.parquet")) if q.is_file()]
            if roots is not None:
                parts = [q for q in parts if is_within(q, roots)]
            _check_bytes(sum(q.stat().st_size for q in parts), f"the parts of {p.name}")
            tables, rows = [], 0
            for part in parts:
                try:
                    table = _checked_table(part.read_bytes(), MAX_RESULTS_ROWS)
                except (OSError, ParameterError):
                    continue  # a part being written, or not ours: the others still count
                rows += table.num_rows
                if rows > MAX_RESULTS_ROWS:
                    raise ParameterError(f"{p.name} holds more than {MAX_RESULTS_ROWS} rows; at most that many "
                                         f"are read")
                tables.append(table)
            return pa.concat_tables(tables) if tables else SCHEMA.empty_table()
        if not p.is_file():
            raise ParameterError(f"no such results folder or Parquet file: {source}")
        _check_bytes(p.stat().st_size, p.name)
        source = p.read_bytes()
    data = source if isinstance(source, bytes) else source.read(MAX_RESULTS_BYTES + 1)
    _check_bytes(len(data), "this results file")
    return _checked_table(data, MAX_RESULTS_ROWS)


def _check_bytes(size: int, what: str) -> None:
    if size > MAX_RESULTS_BYTES:
        raise ParameterError(f"{what} is {size / 2**20:.0f} MB; results files of at most "
                             f"{MAX_RESULTS_BYTES // 2**20} MB are read")


def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):  # a pandas "category" column
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_null(t)


def _checked_table(data: bytes, max_rows: int) -> pa.Table:
    """``data`` (Parquet bytes) as a :data:`SCHEMA` table, checked before decoding (see read_results)."""
    try:
        pf = pq.ParquetFile(io.BytesIO(data))
        have = pf.schema_arrow
    except (OSError, pa.ArrowException) as exc:
        raise ParameterError(f"not a Parquet results file: {' '.join(str(exc).split())[:200]}") from None
    missing = [c for c in REQUIRED if c not in have.names]
    if missing:
        raise ParameterError(f"not an audit results table: missing column(s) {', '.join(missing)}")
    if pf.metadata.num_rows > max_rows:
        raise ParameterError(f"this results table has {pf.metadata.num_rows} rows; at most {MAX_RESULTS_ROWS} "
                             f"are read")
    columns = [f.name for f in SCHEMA if f.name in have.names]
    for name in columns:
        t, want = have.field(name).type, SCHEMA.field(name).type
        ok = _is_text(t) if pa.types.is_string(want) else _is_number(t)
        if not ok:
            raise ParameterError(f"not an audit results table: column {name!r} is {t}, expected {want}")
    text = [n for n in columns if pa.types.is_string(SCHEMA.field(n).type) and not pa.types.is_null(have.field(n).type)]
    try:
        # Strings are read dictionary-encoded so their decoded size is known before it is allocated.
        table = pq.ParquetFile(io.BytesIO(data), read_dictionary=text).read(columns=columns)
        out: dict[str, Any] = {}
        text_bytes = 0
        for field in SCHEMA:
            fill = None if pa.types.is_floating(field.type) else ("" if pa.types.is_string(field.type) else -1)
            if field.name not in table.column_names:
                out[field.name] = pa.nulls(table.num_rows, field.type).fill_null(fill) if fill is not None \
                    else pa.nulls(table.num_rows, field.type)
                continue
            col = table.column(field.name)
            if field.name in text:
                longest, size = _text_size(col)
                if longest > MAX_TEXT_CHARS:
                    raise ParameterError(f"column {field.name!r} holds a value of {longest} bytes; at most "
                                         f"{MAX_TEXT_CHARS} are read")
                text_bytes += size
                if text_bytes > MAX_TEXT_BYTES:
                    raise ParameterError(f"this results table holds more than {MAX_TEXT_BYTES // 2**20} MB of text")
            col = col.cast(field.type)
            out[field.name] = col.fill_null(fill) if fill is not None else col
        return pa.table(out, schema=SCHEMA)
    except (OSError, pa.ArrowException) as exc:
        raise ParameterError(f"not a readable audit results table: {' '.join(str(exc).split())[:200]}") from None


def _text_size(col: "pa.ChunkedArray") -> tuple[int, int]:
    """(longest value in bytes, total bytes once decoded) of a (dictionary-encoded) string column."""
    longest, total = 0, 0
    for chunk in col.chunks:
        if pa.types.is_dictionary(chunk.type):
            lengths = pc.binary_length(chunk.dictionary)
            used = pc.take(lengths, chunk.indices)
        else:
            lengths = used = pc.binary_length(chunk)
        longest = max(longest, int(pc.max(lengths).as_py() or 0))
        total += int(pc.sum(used).as_py() or 0)
    return longest, total


def manifest_path(folder: Union[str, Path]) -> Optional[Path]:
    """The manifest of a results folder: ``_audit.json``, else an old folder's ``audit.json``; None
    when it has neither."""
    for name in (MANIFEST, LEGACY_MANIFEST):
        p = Path(folder) / name
        if p.is_file():
            return p
    return None


def read_manifest(folder: Union[str, Path], *, roots: Optional[Sequence[Path]] = None) -> dict[str, Any]:
    """What a results folder audited (see :func:`manifest_path`); ``{}`` without a manifest, or
    when ``roots`` are given and the manifest resolves outside them (a symlink)."""
    p = manifest_path(folder)
    if p is None or (roots is not None and not is_within(p, roots)):
        return {}
    return json.loads(p.read_text())


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
