"""A results folder is a standard Parquet dataset: pandas, pyarrow, DuckDB and Ray read it as it is
(the manifest is ``_audit.json``, the maps are under ``_maps/``); older folders still read here."""
from __future__ import annotations

import json

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from cnnviz_core.audit.results import (COLUMNS, LEGACY_MANIFEST, MANIFEST, MAPS_DIR, ResultsFolder, empty_row,
                                       manifest_path, read_manifest, read_results, rows_to_table)
from cnnviz_core.audit.runner import run_audit
from cnnviz_core.audit.sources import list_images
from cnnviz_core.audit.worker import AuditConfig

KEY = ["path", "method"]


@pytest.fixture(scope="module")
def results(scenes_dir, tmp_path_factory):
    """A real folder from the in-process runner: 4 images x 2 methods in 2 parts, maps saved, plus
    the leftover temporary file of a part a killed run was writing."""
    out = tmp_path_factory.mktemp("audit") / "r"
    config = AuditConfig("shapes-cnn", ("gradcam", "eigencam"), ("deletion",), weights=None, device="cpu",
                         steps=4)
    summary = run_audit(list_images(str(scenes_dir), limit=4), config, out, use_ray=False, batch_size=2,
                        save_maps=True, progress=False)
    assert summary.rows_ok == 8
    (out / ".part-killed-00001.parquet.tmp").write_bytes(b"PAR1 half written")
    return out


def _same_rows(df: pd.DataFrame, expected: pd.DataFrame) -> None:
    got = df[list(COLUMNS)].sort_values(KEY).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected.sort_values(KEY).reset_index(drop=True), check_dtype=False)


def test_layout_has_only_parts_besides_skipped_names(results):
    assert (results / MANIFEST).is_file() and not (results / LEGACY_MANIFEST).exists()
    assert json.loads((results / MANIFEST).read_text())["methods"] == ["gradcam", "eigencam"]
    others = [p.name for p in results.iterdir() if not p.name.startswith("part-")]
    assert others and all(name[0] in "_." for name in others), others
    df = read_results(results).to_pandas()
    assert len(df) == 8 and df["map_path"].str.startswith(f"{MAPS_DIR}/").all()
    assert all((results / p).is_file() for p in df["map_path"])


def test_pandas_and_pyarrow_read_the_folder(results):
    expected = read_results(results).to_pandas()
    _same_rows(pd.read_parquet(results), expected)
    _same_rows(ds.dataset(results, format="parquet").to_table().to_pandas(), expected)
    _same_rows(ds.dataset(results).to_table().to_pandas(), expected)
    _same_rows(pq.read_table(results).to_pandas(), expected)


def test_duckdb_reads_the_folder(results):
    duckdb = pytest.importorskip("duckdb")
    expected = read_results(results).to_pandas()
    _same_rows(duckdb.sql(f"select * from read_parquet('{results}/*.parquet')").df(), expected)
    _same_rows(duckdb.sql(f"select * from '{results}/*.parquet'").df(), expected)
    (n,), = duckdb.sql(f"select count(*) from read_parquet('{results}/*.parquet') where status = 'ok'").fetchall()
    assert n == 8


@pytest.mark.slow
def test_ray_reads_the_folder(results, ray_local):
    rows = ray_local.data.read_parquet(str(results)).to_pandas()
    _same_rows(rows, read_results(results).to_pandas())


def _legacy_folder(tmp_path):
    """A folder as earlier versions wrote it: ``audit.json`` and maps under ``maps/``."""
    manifest = {"model": "shapes-cnn", "weights": None, "layer": "stage4", "target": "auto", "steps": 4,
                "methods": ["gradcam"], "metrics": ["deletion"]}
    (tmp_path / LEGACY_MANIFEST).write_text(json.dumps(manifest))
    row = empty_row("a.png", "gradcam")
    row.update(deletion_auc=0.5, map_path="maps/a/gradcam.npy")
    pq.write_table(rows_to_table([row]), tmp_path / "part-old-00001.parquet")
    return manifest


def test_old_folders_still_read_and_resume_renames_the_manifest(tmp_path):
    manifest = _legacy_folder(tmp_path)
    assert manifest_path(tmp_path) == tmp_path / LEGACY_MANIFEST
    assert read_manifest(tmp_path) == manifest
    assert read_results(tmp_path).column("map_path").to_pylist() == ["maps/a/gradcam.npy"]
    ResultsFolder(tmp_path).prepare({**manifest, "methods": ["layercam"]})
    assert not (tmp_path / LEGACY_MANIFEST).exists()
    assert read_manifest(tmp_path)["methods"] == ["gradcam", "layercam"]
    assert pd.read_parquet(tmp_path)["method"].tolist() == ["gradcam"]


def test_manifest_outside_the_roots_is_not_read(tmp_path):
    outside, folder = tmp_path / "outside", tmp_path / "root" / "r"
    outside.mkdir()
    folder.mkdir(parents=True)
    (outside / "secret.json").write_text('{"model": "secret"}')
    (folder / MANIFEST).symlink_to(outside / "secret.json")
    assert read_manifest(folder, roots=[tmp_path / "root"]) == {}
    assert read_manifest(folder)["model"] == "secret"
    assert read_manifest(tmp_path / "root") == {}
