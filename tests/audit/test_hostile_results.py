"""Hostile results files: crafted Parquet (absolute paths, ``../``, symlinks, huge rows, wrong
schema) and server paths outside the data roots. Each gets one line of refusal, no server file is
opened for it, and the app keeps working (no exception)."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

import cnnviz_core.images
import cnnviz_ui.audit_view as audit_view
from cnnviz_core.audit import results as results_mod
from cnnviz_core.audit.results import ResultsFolder, empty_row, read_results, rows_to_table
from cnnviz_core.errors import ParameterError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clear_caches():
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield


@pytest.fixture
def world(tmp_path, scenes_dir, monkeypatch):
    """``roots/`` (the only data root) holding a good image; ``outside/`` with a real image and a
    real ``.npy`` the server must never show."""
    roots, outside = tmp_path / "roots", tmp_path / "outside"
    roots.mkdir()
    outside.mkdir()
    shutil.copy(scenes_dir / "scene_0000.png", roots / "good.png")
    shutil.copy(scenes_dir / "scene_0001.png", outside / "secret.png")
    np.save(outside / "secret.npy", np.full((16, 16), 0.25, np.float32))
    monkeypatch.setenv("CNNVIZ_DATA_ROOT", str(roots))
    return roots.resolve(), outside.resolve()


@pytest.fixture
def spies(monkeypatch):
    """Every path given to ``load_image`` (both bindings) and ``numpy.load``, recorded."""
    calls: dict[str, list[str]] = {"image": [], "npy": []}
    real_image, real_npy = cnnviz_core.images.load_image, np.load

    def image_spy(source, *args, **kwargs):
        calls["image"].append(str(source))
        return real_image(source, *args, **kwargs)

    def npy_spy(file, *args, **kwargs):
        calls["npy"].append(str(file))
        return real_npy(file, *args, **kwargs)

    monkeypatch.setattr(cnnviz_core.images, "load_image", image_spy)
    monkeypatch.setattr(audit_view, "load_image", image_spy)
    monkeypatch.setattr(np, "load", npy_spy)
    return calls


def _row(path: str, map_path: str = "", **kw) -> dict:
    row = empty_row(path, "gradcam")
    row.update(model="shapes-cnn", layer="stage4", target=0, target_name="circle", prediction=0,
               prediction_name="circle", score=0.9, deletion_auc=0.5, insertion_auc=0.5, seconds=0.1,
               map_path=map_path)
    row.update(kw)
    return row


def _run(source_expr: str, setup: str = "") -> AppTest:
    script = (f"import io\n{setup}from cnnviz_ui.audit_view import render_audit_results\n"
              f"render_audit_results({source_expr})\n")
    return AppTest.from_string(script, default_timeout=60).run()


def _upload(path: Path) -> AppTest:
    return _run("source", f"source = io.BytesIO(open({str(path)!r}, 'rb').read())\n")


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _leaked(calls: dict, *names: str) -> list[str]:
    return [c for kind in calls.values() for c in kind if any(n in c for n in names)]


# ---- uploads: never open a server file -------------------------------------------------------------

def test_upload_with_absolute_path_and_dotdot_map_opens_nothing(world, spies, tmp_path):
    roots, outside = world
    table = rows_to_table([_row(str(outside / "secret.png"), "../../outside/secret.npy"),
                           _row(str(roots / "good.png"), str(outside / "secret.npy"))])
    pq.write_table(table, tmp_path / "hostile.parquet")
    at = _upload(tmp_path / "hostile.parquet")
    _no_exception(at)
    assert not at.error and not at.warning
    assert len(at.info) == 1 and "not in the upload" in at.info[0].value
    assert spies == {"image": [], "npy": []}  # not even the image that is under the roots
    assert not [c for c in at.get("plotly_chart") if "data:image" in c.proto.spec]  # no image panel


# ---- a server results folder: rows are confined -----------------------------------------------------

def test_server_folder_row_outside_roots_is_refused_in_one_line(world, spies):
    roots, outside = world
    ResultsFolder(roots / "r").write(rows_to_table([_row(str(outside / "secret.png")), _row(str(roots / "good.png"))]))
    at = _run(repr(str(roots / "r")))
    _no_exception(at)
    assert not at.error
    assert len(at.warning) == 1 and "outside the data roots" in at.warning[0].value
    assert "1 of 2" in at.warning[0].value and "CNNVIZ_DATA_ROOT" in at.warning[0].value
    assert not _leaked(spies, "secret")
    assert any(c.endswith("good.png") for c in spies["image"])  # the spy sees what is allowed


def test_server_folder_dotdot_and_absolute_map_paths_are_not_read(world, spies):
    roots, outside = world
    folder = roots / "r"
    ResultsFolder(folder).write(rows_to_table([
        _row(str(roots / "good.png"), "../../outside/secret.npy", deletion_auc=0.9),
        _row(str(roots / "good.png"), str(outside / "secret.npy"), deletion_auc=0.8),
    ]))
    at = _run(repr(str(folder)))
    _no_exception(at)
    assert not at.error and len(at.warning) == 1 and "lead out of the results folder" in at.warning[0].value
    assert not _leaked(spies, "secret")


def test_server_folder_symlinks_that_lead_out_are_refused(world, spies):
    roots, outside = world
    folder = roots / "r"
    (folder / "maps").mkdir(parents=True)
    (folder / "maps" / "leak.npy").symlink_to(outside / "secret.npy")
    (roots / "photo.png").symlink_to(outside / "secret.png")
    np.save(folder / "maps" / "ok.npy", np.full((16, 16), 0.5, np.float32))
    ResultsFolder(folder).write(rows_to_table([
        _row(str(roots / "photo.png"), "maps/ok.npy", deletion_auc=0.9),     # image symlink leads out
        _row(str(roots / "good.png"), "maps/leak.npy", deletion_auc=0.8),    # map symlink leads out
    ]))
    at = _run(repr(str(folder)))
    _no_exception(at)
    assert not at.error
    values = [w.value for w in at.warning]
    assert len(values) == 2 and any("outside the data roots" in v for v in values) \
        and any("lead out" in v for v in values)
    assert not _leaked(spies, "secret", "photo.png", "leak.npy")
    assert any(c.endswith("ok.npy") for c in spies["npy"])  # the map inside is still shown


def test_server_part_symlinked_from_outside_is_skipped(world, tmp_path):
    roots, outside = world
    pq.write_table(rows_to_table([_row("elsewhere.png")]), outside / "part-x-00001.parquet")
    (roots / "r").mkdir()
    (roots / "r" / "part-x-00001.parquet").symlink_to(outside / "part-x-00001.parquet")
    assert read_results(roots / "r", roots=[roots]).num_rows == 0
    assert read_results(roots / "r").num_rows == 1  # only the confined reader skips it


def test_server_path_outside_roots_is_one_error_line(world, spies):
    _, outside = world
    for text in (str(outside), "../outside", "/etc"):
        at = _run(repr(text))
        _no_exception(at)
        assert len(at.error) == 1 and "CNNVIZ_DATA_ROOT" in at.error[0].value, text
        assert not at.markdown and not at.get("plotly_chart")
    assert spies == {"image": [], "npy": []}


# ---- hostile tables: one line, no traceback ----------------------------------------------------------

def _write(tmp_path: Path, table: pa.Table, name: str = "t.parquet") -> Path:
    pq.write_table(table, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("table, match", [
    (pa.table({"path": ["a.png"]}), "missing column"),
    (pa.table({"path": [1, 2], "method": ["gradcam"] * 2, "status": ["ok"] * 2}), "column 'path' is int64"),
    (pa.table({"path": ["a"], "method": ["gradcam"], "status": ["ok"], "deletion_auc": ["high"]}),
     "column 'deletion_auc'"),
    (pa.table({"path": [{"x": 1}], "method": ["gradcam"], "status": ["ok"]}), "column 'path'"),
    (pa.table({"path": ["x" * 20_000], "method": ["gradcam"], "status": ["ok"]}), "20000 bytes"),
])
def test_wrong_schema_and_huge_cells_are_one_error_line(world, spies, tmp_path, table, match):
    at = _upload(_write(tmp_path, table))
    _no_exception(at)
    assert len(at.error) == 1 and match in at.error[0].value and "\n" not in at.error[0].value
    assert spies == {"image": [], "npy": []}


def test_dictionary_bomb_is_refused_before_decoding(tmp_path):
    """400,000 rows of one 2,000-character path: a few kB on disk, 800 MB once decoded."""
    n = 400_000
    path = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array(["p" * 2000]))
    table = pa.table({"path": path, "method": pa.array(["gradcam"] * n), "status": pa.array(["ok"] * n)})
    file = _write(tmp_path, table, "bomb.parquet")
    assert file.stat().st_size < 5 * 2**20
    with pytest.raises(ParameterError, match="MB of text"):
        read_results(file)


def test_too_many_rows_and_too_many_bytes(tmp_path, monkeypatch):
    table = pa.table({"path": ["a.png"] * 50, "method": ["gradcam"] * 50, "status": ["ok"] * 50})
    file = _write(tmp_path, table)
    monkeypatch.setattr(results_mod, "MAX_RESULTS_ROWS", 10)
    with pytest.raises(ParameterError, match="50 rows"):
        read_results(file)
    monkeypatch.setattr(results_mod, "MAX_RESULTS_ROWS", 1000)
    monkeypatch.setattr(results_mod, "MAX_RESULTS_BYTES", 100)
    with pytest.raises(ParameterError, match="at most 0 MB|MB are read|of at most"):
        read_results(file.read_bytes())
    with pytest.raises(ParameterError, match="of at most"):
        read_results(io.BytesIO(file.read_bytes()))


def test_minimal_foreign_table_is_completed_and_renders(world, spies, tmp_path):
    table = pa.table({"path": ["a.png", None], "method": pa.array(["gradcam", "gradcam"]).dictionary_encode(),
                      "status": ["ok", "ok"], "deletion_auc": [0.2, 0.4], "extra": [[1], [2]]})
    file = _write(tmp_path, table)
    read = read_results(file)
    assert read.schema == results_mod.SCHEMA and read.column("path").to_pylist() == ["a.png", ""]
    assert read.column("label").to_pylist() == [-1, -1]
    at = _upload(file)
    _no_exception(at)
    assert not at.error and "**2 images**" in at.markdown[0].value
    assert spies == {"image": [], "npy": []}


def test_markup_in_results_is_inert(world, tmp_path):
    row = _row("<img src=x onerror=alert(1)>.png", model="![x](http://evil.example/t.png) <b>m</b>")
    file = _write(tmp_path, rows_to_table([row]))
    at = _upload(file)
    _no_exception(at)
    header = at.markdown[0].value
    assert "![x](" not in header and "<b>" not in header


# ---- the Applications page ---------------------------------------------------------------------------

@pytest.mark.slow
def test_applications_page_refuses_a_path_outside_the_roots(world, spies):
    roots, outside = world
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=180)
    at.switch_page("pages/applications.py").run()
    _no_exception(at)
    assert any(str(roots) in c.value for c in at.caption)  # the allowed roots are stated
    at.text_input(key="app_audit_path").set_value(str(outside)).run()
    _no_exception(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "outside the allowed folders" in errors[0] and str(roots) in errors[0]
    at.text_input(key="app_audit_path").set_value("../outside").run()
    _no_exception(at)
    assert len(at.error) == 1 and "'..'" in at.error[0].value
    assert not _leaked(spies, "secret", "outside")
    ResultsFolder(roots / "r").write(rows_to_table([_row(str(roots / "good.png"))]))
    at.text_input(key="app_audit_path").set_value("r").run()  # relative to the first root: works
    _no_exception(at)
    assert not at.error and any("**1 images**" in m.value for m in at.markdown)


def test_audit_tables_download_as_csv_with_formulas_defused(world, tmp_path, monkeypatch):
    """The leaderboard, worst rows and failed rows each have a CSV download; a hostile path that a
    spreadsheet would run as a formula is written as text."""
    import csv

    from streamlit.delta_generator import DeltaGenerator

    recorded: dict = {}
    original = DeltaGenerator.download_button

    def record(self, label, data, file_name=None, *args, **kwargs):
        recorded[file_name] = data
        return original(self, label, data, file_name, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", record)
    rows = [_row("=HYPERLINK(\"http://evil.example\")", deletion_auc=0.9), _row("plain.png"),
            {**_row("@bad.png"), "status": "failed", "error": "+cmd|' /C calc'!A0"}]
    at = _upload(_write(tmp_path, rows_to_table(rows)))
    _no_exception(at)
    names = {"cnnviz-audit-leaderboard.csv", "cnnviz-audit-worst-rows.csv", "cnnviz-audit-failed-rows.csv"}
    assert names <= set(recorded), sorted(recorded)
    tables = {n: list(csv.DictReader(io.StringIO((recorded[n]() if callable(recorded[n]) else recorded[n]).decode())))
              for n in names}
    assert [r["method"] for r in tables["cnnviz-audit-leaderboard.csv"]] == ["gradcam"]
    worst_paths = {r["path"] for r in tables["cnnviz-audit-worst-rows.csv"]}
    assert "'=HYPERLINK(\"http://evil.example\")" in worst_paths and "plain.png" in worst_paths
    failed = tables["cnnviz-audit-failed-rows.csv"]
    assert [(r["path"], r["error"]) for r in failed] == [("'@bad.png", "'+cmd|' /C calc'!A0")]
