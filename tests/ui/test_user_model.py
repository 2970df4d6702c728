"""AppTest of "Your model" and of image sets: a fine-tuned ResNet-18 (3 classes) as a state_dict, a
``.pt2`` traced at 64 px and a TorchScript file, uploaded with a labels file; every page with each;
privacy (a second session sees nothing, the engine's shared model cache never holds it); one-line
errors for bad, too large and out-of-folder files; several images, the CAM page's images × methods
grid and the Applications page's in-process audit of the set."""
from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cnnviz_ui.navigation import PAGES as NAV_PAGES

pytestmark = pytest.mark.slow  # each test starts the app and runs models: seconds each

REPO = Path(__file__).resolve().parents[2]
PAGES = [p.stem for p in NAV_PAGES]
LABELS = b"apple\nbanana\ncherry\n"
TIMEOUT = 300
USER_KEY = "cnnviz_user_model"


@pytest.fixture(autouse=True)
def clear_caches():
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    yield


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, Path]:
    """A fine-tuned-looking ResNet-18 with a 3-class head, saved three ways."""
    import torch
    import torchvision

    folder = tmp_path_factory.mktemp("user-models")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    files = {"pth": folder / "fruit-resnet18.pth", "pt2": folder / "fruit-64.pt2", "ts": folder / "fruit.ts"}
    torch.save(model.state_dict(), files["pth"])
    example = (torch.zeros(1, 3, 64, 64),)
    torch.export.save(torch.export.export(model, example), files["pt2"])
    with warnings.catch_warnings():  # torch.jit.trace is deprecated, and still what people have
        warnings.simplefilter("ignore")
        torch.jit.trace(model, example).save(str(files["ts"]))
    return files


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def png(color, size=(96, 72)) -> bytes:
    buf = io.BytesIO()
    image = Image.new("RGB", size, (240, 240, 240))
    for x in range(size[0] // 4, 3 * size[0] // 4):
        for y in range(size[1] // 4, 3 * size[1] // 4):
            image.putpixel((x, y), color)
    image.save(buf, format="PNG")
    return buf.getvalue()


def start_yours(page: str = "cam") -> AppTest:
    """A session on ``page`` with the model source switched to "Your model" (nothing loaded yet)."""
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=TIMEOUT).run()
    at.switch_page(f"pages/{page}.py").run()
    at.radio(key="sb_model_source").set_value("Your model").run()
    # The page stopped ("needs a loaded model"): AppTest then runs the page script itself, where the
    # sidebar widgets get new identities; one more run settles them before the uploads.
    at.run()
    return at


def upload_model(at: AppTest, path: Path, labels: bytes | None = LABELS) -> AppTest:
    at.file_uploader(key="sb_um_file_0").set_value((path.name, path.read_bytes(), "application/octet-stream"))
    if labels is not None:
        at.file_uploader(key="sb_um_labels_0").set_value(("labels.txt", labels, "text/plain"))
    return at.run()


def selection(at: AppTest):
    return at.session_state["cnnviz_selection"]


def test_upload_state_dict_and_labels_cam_explains_with_those_names(model_files):
    at = upload_model(start_yours("cam"), model_files["pth"])
    assert_clean(at)
    sel = selection(at)
    assert sel.user_model and sel.handle is not None
    assert sel.handle.class_names == ["apple", "banana", "cherry"]
    assert "architecture detected: resnet18" in " ".join(c.value for c in at.sidebar.caption)
    assert any("fruit-resnet18.pth" in s.value for s in at.success)
    explaining = [m.value for m in at.markdown if m.value.startswith("Explaining")]
    assert explaining and any(n in explaining[0] for n in ("apple", "banana", "cherry")), explaining
    assert at.get("plotly_chart"), "the CAM grid is drawn"
    # The target picker lists the user's class names.
    options = at.selectbox(key="cam_target").options
    assert {"apple", "banana", "cherry"} <= {o.split(" (")[0] for o in options if not o.startswith("Top")}


def test_user_model_is_private_to_its_session(model_files):
    from cnnviz_ui.state import get_engine

    at = upload_model(start_yours("basics"), model_files["pth"])
    assert_clean(at)
    key = selection(at).handle.key
    assert USER_KEY in at.session_state
    # Never in the engine's shared model cache.
    assert not any("fruit" in name or "file:" in name for name in get_engine().loaded())
    # A second session (a new AppTest) sees only the catalog.
    other = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=TIMEOUT).run()
    assert_clean(other)
    assert USER_KEY not in other.session_state
    assert not selection(other).user_model and selection(other).handle.key != key
    assert all("fruit" not in o for o in other.selectbox(key="sb_model").options)
    other.radio(key="sb_model_source").set_value("Your model").run()
    assert selection(other).handle is None
    other.switch_page("pages/basics.py").run()  # the home page needs no model; basics does
    assert any("needs a loaded model" in i.value for i in other.info)
    # Remove frees it in the first session; the catalog model comes back with the source switch.
    at.button(key="sb_um_remove").click().run()
    assert USER_KEY not in at.session_state
    assert selection(at).handle is None


@pytest.mark.parametrize("kind", ["pth", "pt2", "ts"])
def test_every_page_works_or_says_why_in_one_line(model_files, kind):
    at = upload_model(start_yours("basics"), model_files[kind])
    assert not at.exception and not at.error, [e.value for e in at.error]
    handle = selection(at).handle
    assert handle.class_names == ["apple", "banana", "cherry"]
    if kind == "pt2":
        assert handle.input_size == 64  # the program's own input size
    for page in PAGES:
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
        for alert in list(at.info) + list(at.warning):
            assert "\n" not in alert.value, (page, alert.value)
        if kind == "ts" and page in ("basics", "deep-dream"):
            assert any("cannot be hooked" in i.value for i in at.info), page
        if page == "style-transfer":
            assert any("always runs on VGG-19" in i.value for i in at.info)
        if page == "cam":
            assert at.get("plotly_chart"), "CAM still explains"
            if kind == "ts":
                assert set(at.multiselect(key="cam_methods").value) <= {
                    "saliency", "smoothgrad", "integrated_gradients", "occlusion"}


def test_bad_files_are_one_line_errors_and_the_app_keeps_running(model_files, monkeypatch, tmp_path):
    at = start_yours("cam")
    at.file_uploader(key="sb_um_file_0").set_value(("pickled.pth", b"\x80\x04junk that is no checkpoint",
                                                    "application/octet-stream")).run()
    assert not at.exception
    assert len(at.error) == 1 and "pickled.pth" in at.error[0].value and "\n" not in at.error[0].value
    # A labels file with the wrong number of names.
    upload_model(at, model_files["pth"], labels=b"one\ntwo\n")
    assert not at.exception and len(at.error) == 1
    assert "2 names" in at.error[0].value and "3 outputs" in at.error[0].value
    # Too large: the per-kind model limit (patched small), stated in the message.
    import cnnviz_ui.user_model as um

    monkeypatch.setattr(um, "MODEL_UPLOAD_MB", 1)
    upload_model(at, model_files["pth"], labels=None)
    assert not at.exception and len(at.error) == 1
    assert "upload limit for models is 1 MB" in at.error[0].value
    # Back to the catalog: the page works again.
    at.radio(key="sb_model_source").set_value("Catalog").run()
    assert not at.exception and not at.error and at.get("plotly_chart")


def test_model_path_is_confined_to_the_model_folder(model_files, monkeypatch, tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    (root / "fruit.pth").write_bytes(model_files["pth"].read_bytes())
    (root / "fruit.pth.json").write_text(json.dumps({"classes": ["apple", "banana", "cherry"]}))
    monkeypatch.setenv("CNNVIZ_MODEL_ROOT", str(root))
    at = start_yours("cam")
    at.radio(key="sb_um_from").set_value("Path on the server").run()
    assert any(str(root) in c.value for c in at.sidebar.caption), "the model folder is stated"
    at.text_input(key="sb_um_path").input(str(model_files["pth"])).run()  # outside the folder
    assert not at.exception and len(at.error) == 1
    assert "outside the allowed folders" in at.error[0].value and "CNNVIZ_MODEL_ROOT" in at.error[0].value
    at.text_input(key="sb_um_path").input("fruit.pth").run()  # relative to the folder; sidecar labels
    assert_clean(at)
    assert selection(at).handle.class_names == ["apple", "banana", "cherry"]


def test_architecture_picker_and_preprocessing_fields(model_files):
    at = start_yours("basics")
    options = at.selectbox(key="sb_um_arch").options
    assert options[0] == "auto-detect" and "resnet18" in options and "timm:resnet18" in options
    at.selectbox(key="sb_um_arch").set_value("resnet18")
    at.number_input(key="sb_um_size").set_value(160)
    at.text_input(key="sb_um_mean").input("0.5, 0.5, 0.5")
    at.text_input(key="sb_um_std").input("0.25 0.25 0.25")
    upload_model(at, model_files["pth"])
    assert_clean(at)
    spec = selection(at).handle.spec
    assert spec.input_size == 160 and tuple(spec.mean) == (0.5, 0.5, 0.5) and tuple(spec.std) == (0.25, 0.25, 0.25)
    at.text_input(key="sb_um_mean").input("0.5, 0.5").run()
    assert not at.exception and len(at.error) == 1 and "mean" in at.error[0].value


def test_image_set_zip_grid_and_in_process_audit(model_files):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("red.png", png((220, 30, 30)))
        zf.writestr("nested/", b"")
        zf.writestr(".hidden.png", png((1, 2, 3)))
        zf.writestr("__MACOSX/._red.png", b"junk")
        zf.writestr("broken.png", b"\x89PNG\r\n\x1a\n not really")
        zf.writestr("readme.txt", b"hello")
    at = upload_model(start_yours("cam"), model_files["pth"])
    at.radio(key="sb_source").set_value("Upload").run()
    at.file_uploader(key="sb_upload").set_value([
        ("set.zip", archive.getvalue(), "application/zip"),
        ("blue.png", png((30, 30, 220)), "image/png"),
        ("green.png", png((30, 200, 30)), "image/png"),
    ]).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    sel = selection(at)
    assert [i.label for i in sel.images] == ["set.zip/red.png", "blue.png", "green.png"]
    warnings = [w.value for w in at.sidebar.warning]
    assert any("broken.png" in w for w in warnings) and any("readme.txt" in w for w in warnings)
    assert not any("hidden" in w or "MACOSX" in w for w in warnings)
    at.selectbox(key="sb_pick").set_value("blue.png").run()
    assert selection(at).image_label == "blue.png"
    # CAM: one row per image, one column per method.
    at.multiselect(key="cam_methods").set_value(["gradcam", "saliency"]).run()
    at.segmented_control(key="cam_view").set_value("Images × methods").run()
    assert_clean(at)
    grid = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    images = [t for t in grid[-1]["data"] if t["type"] == "image"]
    assert len(images) == 3 * 2
    # Applications: audit the set in-process, then the audit view shows it.
    at.switch_page("pages/applications.py").run()
    assert_clean(at)
    at.multiselect(key="app_set_methods").set_value(["gradcam"])
    at.select_slider(key="app_set_steps").set_value(8)
    at.button(key="app_set_audit_run").click().run()
    assert_clean(at)
    state = at.session_state["task:app_set_audit"]
    assert state.status == "done"
    frame, _ = state.result
    assert sorted(frame["path"]) == sorted(["set.zip/red.png", "blue.png", "green.png"])
    assert (frame["status"] == "ok").all() and frame["deletion_auc"].notna().all()
    assert set(frame["target_name"]) <= {"apple", "banana", "cherry"}
    assert "/tmp" not in " ".join(frame["path"])  # no server paths shown
    assert any(getattr(c, "key", None) == "audit_set_dist" for c in at.get("plotly_chart")), \
        "the audit view draws the distribution of the set's results"
