"""Image listing: scenes folders, plain folders, globs, masks folders, errors."""
from __future__ import annotations

import json

import pytest

from cnnviz_core.audit.sources import AuditItem, list_images
from cnnviz_core.errors import ParameterError


def test_scenes_folder_gives_labels_and_masks(scenes_dir):
    items = list_images(str(scenes_dir))
    doc = json.loads((scenes_dir / "scenes.json").read_text())
    assert len(items) == len(doc["images"]) == 20
    for item, entry in zip(items, doc["images"]):
        assert item.path.endswith(entry["image"]) and item.mask.endswith(entry["mask"])
        assert item.label == entry["objects"][0]["class_index"]
        assert item.object_values == (1,)


def test_folder_excludes_masks_and_glob_and_limit(scenes_dir, tmp_path):
    (tmp_path / "a.png").write_bytes((scenes_dir / "scene_0000.png").read_bytes())
    (tmp_path / "a.mask.png").write_bytes((scenes_dir / "scene_0000.mask.png").read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    assert [i.path for i in list_images(str(tmp_path))] == [str(tmp_path / "a.png")]
    globbed = list_images(str(scenes_dir / "scene_001*.png"))
    assert len(globbed) == 10 and all(not i.path.endswith(".mask.png") for i in globbed)
    assert len(list_images(str(scenes_dir), limit=3)) == 3


def test_masks_folder_pairs_by_name(scenes_dir, tmp_path):
    images, masks = tmp_path / "img", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    (images / "x.png").write_bytes((scenes_dir / "scene_0001.png").read_bytes())
    (images / "y.png").write_bytes((scenes_dir / "scene_0002.png").read_bytes())
    (masks / "x.mask.png").write_bytes((scenes_dir / "scene_0001.mask.png").read_bytes())
    items = {i.path.rsplit("/", 1)[-1]: i for i in list_images(str(images), masks=str(masks))}
    assert items["x.png"].mask.endswith("x.mask.png") and items["y.png"].mask == ""
    assert items["x.png"].label == -1 and items["x.png"].object_classes == ()


def test_errors_are_parameter_errors(tmp_path):
    with pytest.raises(ParameterError, match="no such"):
        list_images(str(tmp_path / "missing"))
    with pytest.raises(ParameterError, match="no images"):
        list_images(str(tmp_path))
    with pytest.raises(ParameterError, match="limit"):
        list_images(str(tmp_path), limit=0)
    (tmp_path / "scenes.json").write_text("{not json")
    with pytest.raises(ParameterError, match="scenes file"):
        list_images(str(tmp_path))


def test_item_row_round_trip():
    item = AuditItem("/a/b.png", 3, "/a/b.mask.png", (3, 1), (1, 2))
    assert AuditItem.from_row(item.to_row()) == item
