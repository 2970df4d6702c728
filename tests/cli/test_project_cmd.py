"""``python -m cnnviz_core project`` and ``top-activations``: files, JSON keys, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cnnviz_core.cli import main


@pytest.fixture()
def image_path(tmp_path, shapes_scene_image):
    path = tmp_path / "scene.png"
    shapes_scene_image.save(path)
    return path


@pytest.fixture()
def folder(tmp_path):
    from cnnviz_core.scenes import generate_scene

    d = tmp_path / "scenes"
    d.mkdir()
    for i in range(6):
        Image.fromarray(generate_scene(4242, i, objects=2).image).save(d / f"s{i}.png")
    return d


def test_project_writes_raw_gradients_input_and_summary(tmp_path, image_path, capsys):
    out = tmp_path / "out"
    code = main(["project", str(image_path), "--model", "shapes-cnn", "--weights", "none", "--layer", "stage3",
                 "--channel", "5", "--at", "10,12", "--methods", "deconvnet,guided_backprop,saliency",
                 "--out", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == json.loads((out / "summary.json").read_text())
    unit = summary["unit"]
    assert set(unit) == {"layer", "channel", "y", "x", "activation"}
    assert (unit["layer"], unit["channel"], unit["y"], unit["x"]) == ("stage3", 5, 10, 12)
    top, left, bottom, right = summary["receptive_field"]
    x = np.load(out / "input.npy")
    assert x.shape == (1, 3, 128, 128) and x.dtype == np.float32
    from cnnviz_core import load_model
    from cnnviz_core.hooks import forward_until

    handle = load_model("shapes-cnn", weights=None)
    xi = torch.from_numpy(x).requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(forward_until(handle.model, xi, "stage3")[0, 5, 10, 12], xi)
    assert unit["activation"] == pytest.approx(float(forward_until(handle.model, torch.from_numpy(x), "stage3")
                                                     [0, 5, 10, 12]), rel=1e-5)
    for key in ("deconvnet", "guided_backprop", "saliency"):
        grad = np.load(out / f"{key}.npy")
        assert grad.shape == (3, 128, 128) and grad.dtype == np.float32
        outside = grad.copy()
        outside[:, top:bottom, left:right] = 0
        assert not outside.any()
    np.testing.assert_allclose(np.load(out / "saliency.npy"), g[0].numpy(), rtol=1e-4, atol=1e-7)


def test_project_without_at_takes_the_channels_strongest(tmp_path, image_path):
    out = tmp_path / "o"
    assert main(["project", str(image_path), "--model", "shapes-cnn", "--weights", "none", "--layer", "stage2",
                 "--channel", "3", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    from cnnviz_core import load_model
    from cnnviz_core.hooks import forward_until

    handle = load_model("shapes-cnn", weights=None)
    with torch.no_grad():
        fmap = forward_until(handle.model, torch.from_numpy(np.load(out / "input.npy")), "stage2")[0, 3]
    y, x = divmod(int(fmap.reshape(-1).argmax()), fmap.shape[1])
    assert (summary["unit"]["y"], summary["unit"]["x"]) == (y, x)
    assert sorted(p.name for p in out.iterdir()) == ["deconvnet.npy", "guided_backprop.npy", "input.npy",
                                                     "saliency.npy", "summary.json"]


def test_top_activations_writes_sorted_rows_and_pngs(tmp_path, folder, capsys):
    out = tmp_path / "top"
    code = main(["top-activations", str(folder), "--model", "shapes-cnn", "--weights", "none", "--layer", "stage3",
                 "--channel", "7", "--k", "4", "--out", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == json.loads((out / "summary.json").read_text())
    top = summary["top"]
    assert len(top) == 4 and len({r["image"] for r in top}) == 4
    assert [r["activation"] for r in top] == sorted((r["activation"] for r in top), reverse=True)
    for r in top:
        assert set(r) == {"image", "y", "x", "activation", "receptive_field", "patch", "projection"}
        t, l, b, rr = r["receptive_field"]
        for key in ("patch", "projection"):
            img = Image.open(out / r[key])
            assert img.size == (rr - l, b - t) and img.mode == "RGB"
        assert (folder / r["image"]).exists()


@pytest.mark.parametrize("argv,match", [
    (["--layer", "stage9", "--channel", "0"], "no layer"),
    (["--layer", "stage2", "--channel", "99"], "out of range"),
    (["--layer", "stage2", "--channel", "0", "--at", "3"], "--at expects Y,X"),
    (["--layer", "stage2", "--channel", "0", "--at", "40,0"], "outside"),
    (["--layer", "stage2", "--channel", "0", "--methods", "gradcam"], "not a projection"),
])
def test_project_errors_are_one_line(tmp_path, image_path, capsys, argv, match):
    code = main(["project", str(image_path), "--model", "shapes-cnn", "--weights", "none", *argv,
                 "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code != 0 and match in err and err.count("\n") == 1


@pytest.mark.parametrize("argv,match", [
    (["--channel", "0", "--k", "0"], "--k must be >= 1"),
    (["--channel", "999"], "out of range"),
])
def test_top_activations_errors_are_one_line(tmp_path, folder, capsys, argv, match):
    code = main(["top-activations", str(folder), "--model", "shapes-cnn", "--weights", "none", "--layer", "stage2",
                 *argv, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err  # the progress line, then one error line
    assert code != 0 and "Traceback" not in err and match in err.splitlines()[-1]
    assert err.splitlines()[-1].startswith("error:") and match not in "".join(err.splitlines()[:-1])
    code = main(["top-activations", str(tmp_path / "missing"), "--model", "shapes-cnn", "--weights", "none",
                 "--layer", "stage2", "--channel", "0", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code != 0 and "not a folder" in err and err.count("\n") == 1


def test_commands_are_listed_by_the_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "cnnviz_core", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "project" in done.stdout and "top-activations" in done.stdout
