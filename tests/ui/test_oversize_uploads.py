"""Oversize uploads of every kind (issue 15, hostile inputs): an image over 50 MB, an image set over its
count and byte limits, a model file over its limit, a labels file over 2 MB, a results Parquet over its
limit. Each is refused in one line and the app keeps working.

Two layers: the service functions get real oversize ``bytes`` at the real limits (``bytes(n)`` is
allocated lazily, so a 500 MB model costs no time); then one AppTest upload per kind goes through the
real uploader, with the limit lowered by ``monkeypatch`` where the real size would be slow to carry.
"""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cnnviz_core import CnnvizError
from cnnviz_core.images import MAX_FILE_BYTES

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 180
MB = 2**20


@pytest.fixture(autouse=True)
def clear_caches():
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    yield


def png(size=(64, 48), color=(20, 160, 60), noise: bool = False) -> bytes:
    if noise:  # incompressible: about 3 bytes a pixel on disk
        import numpy as np

        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (*size[::-1], 3), dtype=np.uint8))
    else:
        image = Image.new("RGB", size, color)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert text and "\n" not in text, text
    return text


# ---- service functions, real limits ----------------------------------------------------------------------
def test_image_over_50_mb_is_refused_before_decoding():
    from cnnviz_core import load_image

    with pytest.raises(CnnvizError) as exc:
        load_image(bytes(MAX_FILE_BYTES + 1))
    assert "limit is 50 MB" in one_line(exc)


def test_image_set_over_its_byte_and_count_limits_keeps_the_good_images():
    from cnnviz_ui.image_set import MAX_IMAGES, MAX_TOTAL_MB, read_image_set

    good = png()
    # Five 45 MB files (each under the per-image limit) after a good image: more than 200 MB in all.
    files = [("good.png", good)] + [(f"big{i}.png", bytes(45 * MB)) for i in range(5)]
    found = read_image_set(files)
    assert [i.label for i in found.images] == ["good.png"]
    over = [p for p in found.problems if f"would exceed {MAX_TOTAL_MB} MB" in p]
    assert over and all("\n" not in p for p in found.problems), found.problems
    found = read_image_set([(f"{i}.png", png(color=(i, 100, 200))) for i in range(MAX_IMAGES + 3)])
    assert len(found.images) == MAX_IMAGES
    assert found.problems == (f"more than {MAX_IMAGES} images: the rest are skipped",)


def test_model_file_over_its_limit_is_refused_before_it_is_written():
    from cnnviz_ui.user_model import MODEL_UPLOAD_MB, load_uploaded_model, make_options

    with pytest.raises(CnnvizError) as exc:
        load_uploaded_model(bytes(MODEL_UPLOAD_MB * MB + 1), "huge.pth", "cpu", make_options("auto", None, 0, "", ""))
    assert f"upload limit for models is {MODEL_UPLOAD_MB} MB" in one_line(exc)


def test_labels_over_2_mb_are_refused():
    from cnnviz_ui.user_model import LABELS_UPLOAD_MB, labels_from_upload

    assert LABELS_UPLOAD_MB == 2
    with pytest.raises(CnnvizError) as exc:
        labels_from_upload(b"class\n" * (2 * MB // 6 + 1), "labels.txt")
    assert "labels.txt" in one_line(exc) and "the limit is 2 MB" in str(exc.value)


def test_results_parquet_over_its_limit_is_refused_before_decoding():
    from cnnviz_core.audit.results import MAX_RESULTS_BYTES, read_results

    for source in (bytes(MAX_RESULTS_BYTES + 1), io.BytesIO(bytes(MAX_RESULTS_BYTES + 1))):
        with pytest.raises(CnnvizError) as exc:
            read_results(source)
        assert f"at most {MAX_RESULTS_BYTES // MB} MB" in one_line(exc)


# ---- one real upload per kind, through the app ---------------------------------------------------------
def start(page: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=TIMEOUT).run()
    at.switch_page(f"pages/{page}.py").run()
    return at


def refusals(at: AppTest) -> list[str]:
    """Every error and warning line on the page (sidebar included)."""
    return [e.value for e in at.error] + [w.value for w in at.warning]


def assert_keeps_working(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert at.get("plotly_chart"), "the page still draws its charts"


def test_oversize_image_upload(monkeypatch):
    import cnnviz_core.images as images

    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    at = start("basics")
    at.radio(key="sb_source").set_value("Upload").run()
    at.file_uploader(key="sb_upload").set_value(("big.png", png(noise=True), "image/png")).run()
    lines = refusals(at)
    assert len(lines) == 1 and "big.png" in lines[0] and "limit" in lines[0] and "\n" not in lines[0], lines
    assert_keeps_working(at)  # on the first sample
    assert at.session_state["cnnviz_selection"].image_label != "big.png"


def test_oversize_image_set_upload(monkeypatch):
    import cnnviz_ui.image_set as image_set

    monkeypatch.setattr(image_set, "MAX_TOTAL_MB", 1)
    first, second = png((400, 400), noise=True), png((400, 400), (1, 2, 3), noise=False)
    big = png((520, 520), noise=True)
    assert len(first) + len(big) > MB > len(first)
    at = start("basics")
    at.radio(key="sb_source").set_value("Upload").run()
    at.file_uploader(key="sb_upload").set_value([("a.png", first, "image/png"), ("b.png", big, "image/png"),
                                                 ("c.png", second, "image/png")]).run()
    lines = refusals(at)
    assert len(lines) == 1 and "b.png" in lines[0] and "would exceed 1 MB" in lines[0], lines
    assert_keeps_working(at)
    assert [i.label for i in at.session_state["cnnviz_selection"].images] == ["a.png", "c.png"]


def _yours(page: str = "basics") -> AppTest:
    at = start(page)
    at.radio(key="sb_model_source").set_value("Your model").run()
    at.run()  # the page stopped ("needs a loaded model"); one more run settles the sidebar's widgets
    return at


def _back_to_the_catalog(at: AppTest) -> None:
    at.radio(key="sb_model_source").set_value("Catalog").run()
    assert not at.error, [e.value for e in at.error]
    assert_keeps_working(at)


def test_oversize_model_upload(monkeypatch):
    import cnnviz_ui.user_model as user_model

    monkeypatch.setattr(user_model, "MODEL_UPLOAD_MB", 1)
    at = _yours()
    at.file_uploader(key="sb_um_file_0").set_value(("big.pth", bytes(MB + 1), "application/octet-stream")).run()
    assert not at.exception
    lines = refusals(at)
    assert len(lines) == 1 and "big.pth" in lines[0] and "upload limit for models is 1 MB" in lines[0], lines
    _back_to_the_catalog(at)


def test_oversize_labels_upload():
    at = _yours()
    at.file_uploader(key="sb_um_file_0").set_value(("model.pth", b"\x80\x04 not read", "application/octet-stream"))
    at.file_uploader(key="sb_um_labels_0").set_value(("names.txt", b"class\n" * (2 * MB // 6 + 1), "text/plain"))
    at.run()
    assert not at.exception
    lines = refusals(at)
    assert len(lines) == 1 and "names.txt" in lines[0] and "the limit is 2 MB" in lines[0], lines
    _back_to_the_catalog(at)


RESULTS_APP = """
import streamlit as st
from cnnviz_ui.audit_view import render_audit_results

upload = st.file_uploader("…or upload a results Parquet file", type=["parquet"], key="app_audit_upload")
if upload is not None:
    render_audit_results(upload)
st.write("still here")
"""


def test_oversize_results_upload(monkeypatch, tmp_path):
    """The Applications page's wiring (its uploader's file goes to ``render_audit_results``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import cnnviz_core.audit.results as results

    table = pa.table({"path": ["a.png"] * 200, "method": ["gradcam"] * 200, "status": ["ok"] * 200})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    data = buf.getvalue()
    monkeypatch.setattr(results, "MAX_RESULTS_BYTES", len(data) - 1)
    at = AppTest.from_string(RESULTS_APP, default_timeout=60).run()
    at.file_uploader(key="app_audit_upload").set_value(("results.parquet", data, "application/octet-stream")).run()
    assert not at.exception, [e.value for e in at.exception]
    lines = refusals(at)
    assert len(lines) == 1 and "results files of at most" in lines[0] and "\n" not in lines[0], lines
    assert any(m.value == "still here" for m in at.markdown)
    monkeypatch.setattr(results, "MAX_RESULTS_BYTES", len(data))  # within the limit: it renders
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
