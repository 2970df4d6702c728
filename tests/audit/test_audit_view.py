"""The Applications page's audit view renders a results folder and an uploaded Parquet file."""
from __future__ import annotations

import os

import numpy as np
from streamlit.testing.v1 import AppTest

from cnnviz_core.audit.results import ResultsFolder, empty_row, export_parquet, rows_to_table


def _fake_results(folder, scenes_dir):
    rows = []
    rng = np.random.default_rng(0)
    (folder / "maps").mkdir(parents=True)
    for i in range(6):
        for method in ("gradcam", "eigencam"):
            row = empty_row(str(scenes_dir / f"scene_{i:04d}.png"), method)
            row.update(model="shapes-cnn", layer="stage4", label=i % 3, label_name=f"class{i % 3}",
                       target=i % 3, target_name=f"class{i % 3}", prediction=0, prediction_name="class0",
                       score=0.5, deletion_auc=float(rng.uniform()), insertion_auc=float(rng.uniform()),
                       pointing_hit=float(i % 2), energy_pointing=0.3, seconds=0.1,
                       map_path=f"maps/{i}_{method}.npy")
            np.save(folder / row["map_path"], rng.uniform(size=(128, 128)).astype(np.float16))
            rows.append(row)
    bad = empty_row(str(folder / "corrupt.png"), "gradcam")
    bad.update(status="failed", error="corrupt.png: not an image")
    ResultsFolder(folder).write(rows_to_table(rows + [bad]))


def _app(source: str) -> AppTest:
    script = f"from cnnviz_ui.audit_view import render_audit_results\nrender_audit_results({source})\n"
    return AppTest.from_string(script, default_timeout=60)


def test_renders_folder_with_maps_and_failures(tmp_path, scenes_dir, monkeypatch):
    monkeypatch.setenv("CNNVIZ_DATA_ROOT", f"{tmp_path}{os.pathsep}{scenes_dir}")  # results + their images
    _fake_results(tmp_path / "r", scenes_dir)
    at = _app(repr(str(tmp_path / "r"))).run()
    assert not at.exception and not at.error
    header = at.markdown[0].value
    assert "**7 images**" in header and "layer `stage4`" in header and "1 failed rows" in header
    charts = at.get("plotly_chart")
    assert len(charts) == 4  # pointing bar, distribution, per-class, worst images
    assert len(at.dataframe) == 3  # summary, worst rows, failed rows
    assert not at.warning  # every image and map is under the data roots
    at.selectbox(key="audit_worst_method").set_value("eigencam").run()
    assert not at.exception


def test_renders_uploaded_file(tmp_path, scenes_dir):
    _fake_results(tmp_path / "r", scenes_dir)
    merged = export_parquet(tmp_path / "r", tmp_path / "all.parquet")
    script = f"import io\nsource = io.BytesIO(open({str(merged)!r}, 'rb').read())\n"
    at = AppTest.from_string(script + "from cnnviz_ui.audit_view import render_audit_results\n"
                             "render_audit_results(source)\n", default_timeout=60).run()
    assert not at.exception and not at.error and "**7 images**" in at.markdown[0].value
    assert len(at.info) == 1 and "not in the upload" in at.info[0].value  # no server file opened


def test_bad_upload_is_one_error_line():
    at = AppTest.from_string("import io\nfrom cnnviz_ui.audit_view import render_audit_results\n"
                             "render_audit_results(io.BytesIO(b'not parquet'))\n", default_timeout=60).run()
    assert not at.exception and len(at.error) == 1 and "not a Parquet" in at.error[0].value
