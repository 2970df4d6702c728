"""Results folder: atomic parts, resume bookkeeping, manifest, reading folders / files / uploads."""
from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest

from cnnviz_core.audit.results import (COLUMNS, ResultsFolder, empty_row, export_parquet, method_summary,
                                       read_results, rows_to_table)
from cnnviz_core.errors import ParameterError


def _table(paths, method="gradcam", **values):
    rows = []
    for p in paths:
        row = empty_row(p, method)
        row.update(values)
        rows.append(row)
    return rows_to_table(rows)


def test_parts_done_pairs_and_unreadable_parts_ignored(tmp_path):
    folder = ResultsFolder(tmp_path)
    first = folder.write(_table(["a.png", "b.png"], deletion_auc=0.2))
    folder.write(_table(["a.png"], method="eigencam", deletion_auc=0.4))
    assert first.name.startswith("part-") and not list(tmp_path.glob(".*.tmp"))
    (tmp_path / "part-zzz-broken.parquet").write_bytes(b"PAR1 truncated")
    assert folder.done() == {("a.png", "gradcam"), ("b.png", "gradcam"), ("a.png", "eigencam")}
    table = read_results(tmp_path)
    assert table.num_rows == 3 and tuple(table.column_names) == COLUMNS


def test_manifest_must_match_to_resume(tmp_path):
    ResultsFolder(tmp_path).prepare({"model": "shapes-cnn", "weights": None, "layer": "stage4", "target": "auto",
                                     "steps": 16, "methods": ["gradcam"], "metrics": ["deletion"]})
    ResultsFolder(tmp_path).prepare({"model": "shapes-cnn", "weights": None, "layer": "stage4", "target": "auto",
                                     "steps": 16, "methods": ["layercam"], "metrics": ["deletion"]})
    with pytest.raises(ParameterError, match="model='shapes-cnn'"):
        ResultsFolder(tmp_path).prepare({"model": "resnet50", "weights": None, "layer": "layer4", "target": "auto",
                                         "steps": 16, "methods": ["gradcam"], "metrics": ["deletion"]})


def test_read_single_file_bytes_and_upload(tmp_path):
    ResultsFolder(tmp_path / "r").write(_table(["a.png", "b.png"], deletion_auc=0.5, pointing_hit=1.0))
    merged = export_parquet(tmp_path / "r", tmp_path / "all.parquet")
    assert read_results(merged).num_rows == 2
    data = merged.read_bytes()
    assert read_results(data).num_rows == 2 and read_results(io.BytesIO(data)).num_rows == 2
    with pytest.raises(ParameterError, match="not a Parquet"):
        read_results(b"hello")
    pq.write_table(_table(["a.png"]).select(["path"]), tmp_path / "other.parquet")
    with pytest.raises(ParameterError, match="missing column"):
        read_results(tmp_path / "other.parquet")
    with pytest.raises(ParameterError, match="no such"):
        read_results(tmp_path / "missing.parquet")


def test_method_summary_means_ignore_failed_rows():
    rows = [empty_row(p, "gradcam") for p in ("a", "b", "c")]
    rows[0].update(deletion_auc=0.2, pointing_hit=1.0)
    rows[1].update(deletion_auc=0.4, pointing_hit=0.0)
    rows[2].update(status="failed", error="corrupt", deletion_auc=0.9)
    (s,) = method_summary(rows_to_table(rows))
    assert s["images"] == 3 and s["failed"] == 1
    assert s["deletion_auc"] == pytest.approx(0.3) and s["pointing_acc"] == pytest.approx(0.5)
    assert s["pointing_n"] == 2
