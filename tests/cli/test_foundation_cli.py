"""`models` and `predict` commands: output, JSON, and one-line errors with non-zero exits."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnnviz_core.cli import main


def run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnviz_core", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_models_json_lists_readiness(repo_root):
    out = run_cli("models", "--json", cwd=repo_root)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["zfnet"]["status"] == "untrained"
    assert rows["vgg16"]["status"] in ("ready", "needs download") and rows["vgg16"]["download_mb"] >= 0
    assert rows["resnet50"]["acc1"] == pytest.approx(80.858)


def test_predict_random_weights_json(repo_root, tmp_path):
    img = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(img)
    out = run_cli("predict", str(img), str(img), "--model", "squeezenet1_1", "--weights", "none", "--topk", "3",
                  "--json", cwd=repo_root)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert len(result) == 2 and len(result[0]["top"]) == 3
    probs = [t["probability"] for t in result[0]["top"]]
    assert probs == sorted(probs, reverse=True) and result[0] == result[1]


@pytest.mark.parametrize("args", [
    ["predict", "{missing}", "--model", "squeezenet1_1", "--weights", "none"],
    ["predict", "{corrupt}", "--model", "squeezenet1_1", "--weights", "none"],
    ["predict", "{image}", "--model", "no-such-model"],
    ["predict", "{image}", "--model", "squeezenet1_1", "--weights", "none", "--topk", "0"],
    ["predict", "{image}", "--model", "squeezenet1_1", "--weights", "{corrupt}"],
    ["predict", "{image}", "--model", "resnet18"],  # ImageNet weights not in cache, offline
    ["predict", "{image}", "--model", "squeezenet1_1", "--device", "cuda:7"],
    ["predict", "--model", "squeezenet1_1"],
    ["nonsense-command"],
])
def test_bad_input_one_line_nonzero_exit(tmp_path, args, monkeypatch, capsys):
    """In-process (fast); the subprocess test below checks the real exit path once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    image = tmp_path / "ok.png"
    Image.new("RGB", (32, 32)).save(image)
    corrupt = tmp_path / "bad.png"
    corrupt.write_bytes(b"garbage" * 20)
    values = {"missing": str(tmp_path / "absent.png"), "corrupt": str(corrupt), "image": str(image)}
    try:
        code = main([a.format(**values) for a in args])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    err = capsys.readouterr().err
    assert code != 0
    assert len(err.strip().splitlines()) == 1, err


def test_bad_input_in_a_real_process(repo_root, tmp_path):
    out = run_cli("predict", str(tmp_path / "absent.png"), "--model", "squeezenet1_1", cwd=repo_root)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"error: no such image file: {tmp_path / 'absent.png'}"]
