"""Bounds of the dashboard's upload readers (no app run): image sets and zips (count, total bytes,
zip bombs, hidden and directory members, bad members one line each), and the private temporary copy
of an uploaded model (0700 folder, deleted after loading, size limit, suffix check)."""
from __future__ import annotations

import io
import os
import stat
import zipfile

import pytest
from PIL import Image

from cnnviz_core import CnnvizError
from cnnviz_ui import image_set, user_model
from cnnviz_ui.image_set import read_image_set


def png(color, size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def make_zip(members: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_keeps_good_members_and_says_one_line_per_bad_one():
    data = make_zip({"a.png": png((255, 0, 0)), "dir/": b"", "dir/b.jpg.png": png((0, 0, 255)),
                     ".hidden.png": png((1, 1, 1)), "__MACOSX/._a.png": b"x", "notes.txt": b"hi",
                     "bad.png": b"\x89PNG garbage"})
    found = read_image_set([("set.zip", data), ("c.png", png((0, 255, 0))), ("c-again.png", png((0, 255, 0)))])
    assert [i.label for i in found.images] == ["set.zip/a.png", "set.zip/dir/b.jpg.png", "c.png"]
    assert len(found.problems) == 2
    assert any("notes.txt" in p and "not an image" in p for p in found.problems)
    assert any("bad.png" in p for p in found.problems)
    assert all("\n" not in p for p in found.problems)


def test_zip_bomb_and_oversized_members_are_refused_without_unpacking():
    bomb = make_zip({"bomb.png": b"\0" * (20 * 2**20), "ok.png": png((9, 9, 9))})
    found = read_image_set([("bomb.zip", bomb)])
    assert [i.label for i in found.images] == ["bomb.zip/ok.png"]
    assert any("compression ratio" in p for p in found.problems)
    assert read_image_set([("junk.zip", b"PK\x03\x04 not a zip")]).problems == ("junk.zip: not a readable zip archive",)


def test_oversized_member_is_refused(monkeypatch):
    monkeypatch.setattr(image_set, "MAX_RATIO", 10**9)
    monkeypatch.setattr(image_set, "MAX_FILE_BYTES", 1000)
    data = make_zip({"big.png": png((1, 2, 3), size=(400, 400)) + b"\0" * 5000}, zipfile.ZIP_STORED)
    found = read_image_set([("z.zip", data)])
    assert not found.images and "skipped" in found.problems[0]


def test_count_and_total_limits(monkeypatch):
    monkeypatch.setattr(image_set, "MAX_IMAGES", 3)
    files = [(f"{i}.png", png((i, 0, 0))) for i in range(5)]
    found = read_image_set(files)
    assert len(found.images) == 3 and found.problems == ("more than 3 images: the rest are skipped",)
    monkeypatch.setattr(image_set, "MAX_TOTAL_MB", 0)
    found = read_image_set(files[:1])
    assert not found.images and "would exceed 0 MB" in found.problems[0]


def test_memo_holds_only_the_current_set():
    memo: dict = {}
    read_image_set([("a.png", png((1, 0, 0))), ("b.png", png((2, 0, 0)))], memo)
    assert len(memo) == 2
    read_image_set([("c.png", png((3, 0, 0)))], memo)
    assert len(memo) == 1


def test_uploaded_model_goes_through_a_private_temp_file_that_is_deleted(monkeypatch, tmp_path):
    seen = {}

    def fake_load(path, device, options=None, display_name=None):
        folder = path.parent
        seen.update(mode=stat.S_IMODE(folder.stat().st_mode), file_mode=stat.S_IMODE(path.stat().st_mode),
                    name=path.name, data=path.read_bytes(), folder=folder)
        return "handle"

    monkeypatch.setattr(user_model, "load_user_model", fake_load)
    assert user_model.load_uploaded_model(b"weights", "../../etc/My Model!.pth", "cpu",
                                          user_model.make_options("auto-detect", None, 0, "", "")) == "handle"
    assert seen["mode"] == 0o700 and seen["file_mode"] == 0o600
    assert seen["name"] == "My_Model_.pth" and seen["data"] == b"weights"
    assert not os.path.exists(seen["folder"]), "the private copy is deleted after loading"


def test_upload_limits_and_suffixes_are_one_line_errors(monkeypatch):
    options = user_model.make_options("auto-detect", None, 0, "", "")
    with pytest.raises(CnnvizError, match="not a model file"):
        user_model.load_uploaded_model(b"x", "notes.txt", "cpu", options)
    monkeypatch.setattr(user_model, "MODEL_UPLOAD_MB", 0)
    with pytest.raises(CnnvizError, match="upload limit for models is 0 MB"):
        user_model.load_uploaded_model(b"x", "m.pth", "cpu", options)
    with pytest.raises(CnnvizError, match="three numbers"):
        user_model.make_options("auto-detect", None, 0, "0.5, 0.5", "")
    with pytest.raises(CnnvizError, match="std must be positive"):
        user_model.make_options("resnet18", None, 0, "", "0, 1, 1")
    assert user_model.make_options("timm:resnet18", None, 96, "0.5 0.5 0.5", "").arch == "timm:resnet18"

