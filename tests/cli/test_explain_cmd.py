"""``python -m cnnviz_core explain``: files written, summary content, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnnviz_core.cli import main


@pytest.fixture()
def image_path(tmp_path, shapes_scene_image):
    path = tmp_path / "scene.png"
    shapes_scene_image.save(path)
    return path


def test_explain_writes_maps_input_and_summary(tmp_path, image_path, capsys):
    out = tmp_path / "out"
    code = main(["explain", str(image_path), "--model", "shapes-cnn", "--weights", "none",
                 "--methods", "gradcam,saliency,scorecam", "--param", "channels=8", "--target", "2",
                 "--out", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["model"] == "shapes-cnn" and summary["layer"] == "fusion" and summary["target"] == 2
    assert len(summary["top5"]) == 5 and set(summary["seconds"]) == {"gradcam", "saliency", "scorecam"}
    x = np.load(out / "input.npy")
    assert x.shape == (1, 3, 128, 128) and x.dtype == np.float32
    cam = np.load(out / "gradcam.npy")
    assert cam.shape == (128, 128) and cam.dtype == np.float32 and 0 <= cam.min() and cam.max() <= 1
    assert np.load(out / "saliency.npy").shape == (3, 128, 128)
    assert summary["methods"]["scorecam"]["info"]["channels_used"] == 8


def test_saved_input_reproduces_the_map(tmp_path, image_path):
    from cnnviz_core import explain, load_model

    out = tmp_path / "o"
    assert main(["explain", str(image_path), "--model", "shapes-cnn", "--weights", "none",
                 "--methods", "hirescam", "--out", str(out), "--scale", "none"]) == 0
    handle = load_model("shapes-cnn", weights=None)
    import torch

    again = explain(handle, torch.from_numpy(np.load(out / "input.npy")), "hirescam", scale="none", cache=None)
    np.testing.assert_allclose(again["hirescam"], np.load(out / "hirescam.npy"), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("extra,message", [
    (["--methods", "gradcam,nope"], "unknown method 'nope'"),
    (["--methods", "gradcam", "--layer", "stage9"], "no layer 'stage9'"),
    (["--methods", "gradcam", "--target", "17"], "out of range"),
    (["--methods", "gradcam", "--param", "oops"], "KEY=VALUE"),
])
def test_bad_arguments_give_one_line(tmp_path, image_path, capsys, extra, message):
    code = main(["explain", str(image_path), "--model", "shapes-cnn", "--weights", "none",
                 "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert code != 0 and message in err and err.count("\n") == 1


def test_bad_image_in_a_subprocess(tmp_path, repo_root):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    proc = subprocess.run([sys.executable, "-m", "cnnviz_core", "explain", str(bad), "--model", "shapes-cnn",
                           "--weights", "none", "--methods", "gradcam", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=repo_root, timeout=120)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
