"""`filters`, `maximize`, `dream`, `style`: PNG outputs, progress on stderr, one-line errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnnviz_core.cli import main
from cnnviz_core.scenes import generate_scene


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(generate_scene(4, objects=2, size=96).image).save(path)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_filters_writes_a_colour_grid(tmp_path, capsys):
    out = tmp_path / "k.png"
    assert main(["filters", "--model", "shapes-cnn", "--weights", "none", "--layer", "stage1.conv1",
                 "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    img = np.asarray(Image.open(out))
    assert img.ndim == 3 and img.shape[2] == 3


def test_maximize_and_dream_write_images_and_report_progress(tmp_path, photo, capsys):
    out = tmp_path / "m.png"
    assert main(["maximize", "--model", "shapes-cnn", "--weights", "none", "--layer", "stage2.conv1",
                 "--channel", "1", "--steps", "3", "--size", "48", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "3/3" in captured.err and "objective=" in captured.err
    assert Image.open(out).size == (48, 48)
    out = tmp_path / "d.png"
    assert main(["dream", str(photo), "--model", "shapes-cnn", "--weights", "none", "--layer", "stage3",
                 "--octaves", "2", "--steps", "2", "--max-side", "64", "--out", str(out)]) == 0
    assert "4/4" in capsys.readouterr().err
    assert Image.open(out).size == (64, 64)


@pytest.mark.parametrize("argv, needle", [
    (["maximize", "--model", "shapes-cnn", "--weights", "none", "--layer", "stage2", "--steps", "0"], "1..2000"),
    (["maximize", "--model", "shapes-cnn", "--weights", "none", "--layer", "stage2", "--size", "8"], "32..1024"),
    (["maximize", "--model", "shapes-cnn", "--weights", "none", "--layer", "nope", "--steps", "1"], "nope"),
    (["dream", "PHOTO", "--model", "shapes-cnn", "--weights", "none", "--layer", "stage3", "--octaves", "9"],
     "1..8"),
    (["dream", "missing.png", "--model", "shapes-cnn", "--weights", "none", "--layer", "stage3"], "missing.png"),
    (["filters", "--model", "shapes-cnn", "--weights", "none", "--layer", "stage1"], "not a 2-D convolution"),
    (["filters", "--model", "no-such-model", "--layer", "x"], "unknown model"),
    (["style", "PHOTO", "PHOTO", "--weights", "none", "--size", "2048"], "32..1024"),
    (["style", "PHOTO", "PHOTO", "--weights", "none", "--optimizer", "sgd"], "lbfgs"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, photo, tmp_path, capsys):
    argv = [str(photo) if a == "PHOTO" else a for a in argv] + ["--out", str(tmp_path / "o.png")]
    assert main(argv) == 2
    line = one_line_error(capsys)
    assert line.startswith("error:") and needle in line


def test_style_default_weights_offline_fails_clearly(photo, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CNNVIZ_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    assert main(["style", str(photo), str(photo), "--steps", "1", "--size", "32", "--out", str(tmp_path / "s.png")]) == 2
    line = one_line_error(capsys)
    assert "vgg19" in line and "weights" in line and not (tmp_path / "s.png").exists()


@pytest.mark.slow
def test_style_random_weights_end_to_end(photo, tmp_path, repo_root):
    out = tmp_path / "s.png"
    proc = subprocess.run([sys.executable, "-m", "cnnviz_core", "style", str(photo), str(photo), "--weights", "none",
                           "--steps", "2", "--size", "40", "--out", str(out)], cwd=repo_root, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "2/2" in proc.stderr and "style=" in proc.stderr
    assert Image.open(out).size == (40, 40)


@pytest.mark.parametrize("command, extra", [
    ("filters", ["--layer", "stage1.conv1"]),
    ("maximize", ["--layer", "stage2.conv1", "--channel", "0", "--steps", "1", "--size", "32"]),
    ("dream", ["PHOTO", "--layer", "stage3", "--octaves", "1", "--steps", "1", "--max-side", "32"]),
    ("style", ["PHOTO", "PHOTO", "--steps", "1", "--size", "32", "--optimizer", "adam"]),
])
def test_every_visualize_command_honours_device(command, extra, photo, tmp_path, capsys, monkeypatch):
    """`--device cpu` reaches the loader (``style`` loads VGG-19 with it too) and the model runs there;
    a device this machine lacks is one line and exit 2, before any work."""
    import cnnviz_core.models as models

    seen = []
    original = models.load_model

    def spy(name, weights=None, device="auto", **kwargs):
        seen.append((name, device))
        return original(name, weights, device, **kwargs)

    monkeypatch.setattr(models, "load_model", spy)
    model = ["--model", "shapes-cnn"] if command != "style" else []
    args = [str(photo) if a == "PHOTO" else a for a in extra]
    out = tmp_path / "o.png"
    argv = [command, *args, *model, "--weights", "none", "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0, capsys.readouterr().err
    assert seen == [("vgg19" if command == "style" else "shapes-cnn", "cpu")]
    assert Image.open(out).format == "PNG"
    capsys.readouterr()
    assert main([*argv, "--device", "no-such-device"]) == 2
    line = one_line_error(capsys)
    assert "no-such-device" in line and "not available" in line
