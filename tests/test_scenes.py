"""Tests of cnnviz_core.scenes (procedural scenes with masks) and the ``scenes`` CLI command."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnviz_core.errors import ParameterError
from cnnviz_core.scenes import (CLASSES, TAG_COLORS, generate_scene, generate_scenes, read_scenes,
                                tag_box, write_scenes)

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def mixed() -> list:
    """30 one-object and 30 two-object scenes, with tags."""
    return (generate_scenes(30, 7, tag="match") + generate_scenes(30, 8, objects=2, tag="shuffle"))


def test_same_seed_same_scene_and_scene_alone_reproducible():
    a, b = generate_scenes(3, 5), generate_scenes(3, 5)
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask)
        assert x.objects == y.objects
    alone = generate_scene(5, 2)
    assert np.array_equal(alone.image, a[2].image)
    other = generate_scene(6, 2)
    assert not np.array_equal(other.image, a[2].image)
    assert not np.array_equal(a[0].image, a[1].image)


@pytest.mark.parametrize("size", [64, 96])
def test_shapes_types_and_size_option(size):
    s = generate_scene(1, size=size, objects=2, tag="match")
    assert s.image.shape == (size, size, 3) and s.image.dtype == np.uint8
    assert s.mask.shape == (size, size) and s.mask.dtype == np.uint8
    assert [o.mask_value for o in s.objects] == [1, 2]
    assert set(np.unique(s.mask)) == {0, 1, 2}


def test_generator_does_not_import_torch():
    tree = ast.parse((ROOT / "cnnviz_core" / "scenes.py").read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
             for a in n.names} | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(str(name).split(".")[0] == "torch" for name in names)


def test_masks_match_drawn_objects_and_boxes_are_tight(mixed):
    for s in mixed:
        for o in s.objects:
            m = s.mask == o.mask_value
            assert m.sum() > 30
            assert CLASSES[o.class_index] == o.class_name
            # every pixel under the mask has the object's colour
            assert np.all(s.image[m] == np.asarray(o.color, np.uint8))
            # and the object differs from the background around it
            x0, y0, x1, y1 = o.bbox
            around = s.image[max(0, y0 - 4):y1 + 4, max(0, x0 - 4):x1 + 4].reshape(-1, 3)
            ring = (s.mask[max(0, y0 - 4):y1 + 4, max(0, x0 - 4):x1 + 4] == 0).reshape(-1)
            dist = np.linalg.norm(around[ring].astype(float) - o.color, axis=1)
            assert np.median(dist) > 40
            ys, xs = np.nonzero(m)
            assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_no_overlap_between_objects_nor_with_tag(mixed):
    for s in mixed:
        x0, y0, x1, y1 = tag_box(s.image.shape[0])
        assert not s.mask[: y1 + 2, : x1 + 2].any()
        assert np.all(s.image[y0:y1, x0:x1] == TAG_COLORS[s.tag_class])
        if len(s.objects) == 2:
            a, b = (o.bbox for o in s.objects)
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_all_classes_appear_and_two_object_classes_differ(mixed):
    seen = {o.class_name for s in mixed for o in s.objects}
    assert seen == set(CLASSES)
    for s in mixed:
        if len(s.objects) == 2:
            assert s.objects[0].class_index != s.objects[1].class_index


def test_tag_semantics():
    for s in generate_scenes(20, 3, tag="match"):
        assert s.tag_class == s.objects[0].class_index
    for s in generate_scenes(20, 3, objects=2, tag="shuffle"):
        assert s.tag_class not in s.class_indices and 0 <= s.tag_class < len(CLASSES)
    assert all(s.tag_class is None for s in generate_scenes(5, 3))
    plain, tagged = generate_scene(3, 4), generate_scene(3, 4, tag="shuffle")
    x0, y0, x1, y1 = tag_box(128)
    diff = np.any(plain.image != tagged.image, axis=-1)
    assert diff[y0:y1, x0:x1].all() and diff.sum() == (x1 - x0) * (y1 - y0)


@pytest.mark.parametrize("kwargs", [dict(count=0), dict(size=32), dict(size=2048),
                                    dict(objects=3), dict(tag="corner")])
def test_bad_arguments_raise_parameter_error(kwargs):
    args = dict(count=2, seed=1) | kwargs
    with pytest.raises(ParameterError) as info:
        generate_scenes(args.pop("count"), args.pop("seed"), **args)
    assert "\n" not in str(info.value)


def test_write_read_round_trip(tmp_path):
    scenes = generate_scenes(3, 11, objects=2, tag="match")
    path = write_scenes(scenes, tmp_path, seed=11, size=128)
    doc = json.loads(path.read_text())
    assert doc["classes"] == list(CLASSES) and doc["seed"] == 11 and doc["size"] == 128
    entry = doc["images"][0]
    assert set(entry) >= {"image", "mask", "tag_class", "objects"}
    assert set(entry["objects"][0]) >= {"class", "class_index", "mask_value", "bbox"}
    with Image.open(tmp_path / entry["mask"]) as mask:
        assert mask.mode == "L"
        assert np.array_equal(np.asarray(mask), scenes[0].mask)
    back = read_scenes(tmp_path)
    assert len(back) == 3
    for a, b in zip(scenes, back):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
        assert a.objects == b.objects and a.tag_class == b.tag_class


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnviz_core", "scenes", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_cli_writes_scenes(tmp_path):
    res = _cli("--count", "2", "--seed", "4", "--objects", "2", "--tag", "shuffle", "--size", "80",
               "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "scenes.json").read_text())
    assert doc["size"] == 80 and doc["seed"] == 4 and len(doc["images"]) == 2
    for e in doc["images"]:
        assert (tmp_path / e["image"]).is_file() and (tmp_path / e["mask"]).is_file()
        assert len(e["objects"]) == 2
    expected = generate_scene(4, 1, size=80, objects=2, tag="shuffle")
    assert np.array_equal(read_scenes(tmp_path)[1].image, expected.image)


@pytest.mark.slow
@pytest.mark.parametrize("bad", [["--size", "10"], ["--count", "x"]])
def test_cli_process_bad_arguments_one_line(tmp_path, bad):
    """Both error paths in a real process: engine ParameterError and argparse rejection."""
    res = _cli("--count", "2", "--seed", "1", "--out", str(tmp_path / "o"), *bad)
    assert res.returncode != 0
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("bad", [["--count", "0"], ["--size", "10"], ["--size", "4096"],
                                 ["--objects", "5"], ["--tag", "nope"], ["--seed", "-3"],
                                 ["--count", "x"]])
def test_cli_bad_arguments_one_line(tmp_path, capsys, bad):
    from cnnviz_core.cli import main

    args = {"--count": "2", "--seed": "1", "--out": str(tmp_path / "o")}
    args.update(dict(zip(bad[::2], bad[1::2])))
    try:
        code = main(["scenes", *[v for kv in args.items() for v in kv]])
    except SystemExit as exc:  # argparse rejects the value itself
        code = exc.code
    assert code != 0
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
