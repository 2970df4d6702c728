"""The CLI on user model files: ``predict``/``explain``/``visualize``/``audit`` with ``--model FILE``
and ``--arch``, ``--labels``, ``--input-size``, ``--mean``, ``--std``; bad files and flags exit
non-zero with exactly one stderr line (no traceback, no escape codes); the package imports from
any folder."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from cnnviz_core.cli import build_parser, main
from user_model_files import (
    SIZE, RunsCodeOnLoad, assert_one_line, export_program, fine_tuned, photo, save_state, timm_model, trace_script,
)

LABELS = ("cat", "dog", "bird")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A temporary CNNVIZ_CACHE_DIR holding the signature index (built once; subprocesses read it)."""
    path = tmp_path_factory.getbasetemp() / "cnnviz-cache"
    path.mkdir(exist_ok=True)
    old = os.environ.get("CNNVIZ_CACHE_DIR")
    os.environ["CNNVIZ_CACHE_DIR"] = str(path)
    from cnnviz_core.models.userfiles import SignatureIndex

    SignatureIndex().signatures()  # writes the file when this session has not yet
    yield path
    if old is None:
        os.environ.pop("CNNVIZ_CACHE_DIR", None)
    else:
        os.environ["CNNVIZ_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def user(tmp_path_factory, cache_dir):
    """Files of one fine-tuned ResNet-18 (3 classes): state_dict, .pt2 at 64 px, TorchScript; a
    labels file; an image; plus hostile files."""
    d = tmp_path_factory.mktemp("cli_user")
    model = fine_tuned("resnet18", 3, seed=3)
    photo(5).save(d / "photo.png")
    (d / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (d / "two.txt").write_text("cat\ndog\n")
    torch.save(model, d / "whole.pt")
    torch.save({"w": torch.zeros(1), "x": RunsCodeOnLoad(d / "pwned")}, d / "evil.pth")
    (d / "plain.bin").write_bytes(pickle.dumps(RunsCodeOnLoad(d / "pwned")))
    (d / "junk.pt").write_bytes(b"junk")
    return {"dir": d, "model": model, "pth": save_state(model, d / "ft.pth", wrapper="model_state_dict"),
            "pt2": export_program(model, d / "ft64.pt2", SIZE), "ts": trace_script(model, d / "ft.ts"),
            "img": d / "photo.png", "labels": d / "labels.txt"}


def cli(*args, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def expected_top(user, **preprocess) -> int:
    from cnnviz_core import UserModelOptions, load_model

    handle = load_model(user["pth"], device="cpu", options=UserModelOptions(**preprocess))
    with torch.no_grad():
        return int(user["model"](handle.preprocess(photo(5))).argmax())


def test_predict_prints_the_label_names(user, capsys):
    code, out, err = cli("predict", user["img"], "--model", user["pth"], "--labels", user["labels"],
                         "--input-size", SIZE, "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--json",
                         "--device", "cpu", capsys=capsys)
    assert code == 0, err
    top = json.loads(out)[0]["top"]
    assert [t["class"] for t in top] == [LABELS[t["index"]] for t in top] and len(top) == 3
    assert top[0]["index"] == expected_top(user, input_size=SIZE, mean=(0.5,) * 3, std=(0.25,) * 3)
    code, out, _ = cli("predict", user["img"], "--model", user["pt2"], "--labels", user["labels"], capsys=capsys)
    assert code == 0 and LABELS[expected_top(user, input_size=SIZE)] in out.splitlines()[1]


@pytest.mark.parametrize("kind,methods,shapes", [
    ("pth", "gradcam,guided_backprop", {"gradcam": (SIZE, SIZE), "guided_backprop": (3, SIZE, SIZE)}),
    ("pt2", "gradcam,saliency", {"gradcam": (SIZE, SIZE), "saliency": (3, SIZE, SIZE)}),
    ("ts", "saliency", {"saliency": (3, SIZE, SIZE)}),
])
def test_explain_writes_maps_for_user_files(user, tmp_path, capsys, kind, methods, shapes):
    out = tmp_path / "maps"
    code, stdout, err = cli("explain", user["img"], "--model", user[kind], "--labels", user["labels"],
                            "--input-size", SIZE, "--methods", methods, "--out", out, "--json", capsys=capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["target_name"] in LABELS and summary["input_shape"] == [1, 3, SIZE, SIZE]
    for key, shape in shapes.items():
        assert np.load(out / f"{key}.npy").shape == shape


def test_explain_timm_file_with_arch(tmp_path, capsys, user):
    model = timm_model("mobilenetv3_small_050", 5)
    path = save_state(model, tmp_path / "timm.pth")
    code, _, err = cli("explain", user["img"], "--model", path, "--input-size", SIZE, "--methods", "gradcam",
                       "--out", tmp_path / "o", capsys=capsys)
    assert code != 0
    assert_one_line(err)
    assert "timm:NAME" in err
    code, _, err = cli("explain", user["img"], "--model", path, "--arch", "timm:mobilenetv3_small_050",
                       "--input-size", SIZE, "--methods", "gradcam", "--out", tmp_path / "o", capsys=capsys)
    assert code == 0, err
    assert np.load(tmp_path / "o" / "gradcam.npy").shape == (SIZE, SIZE)


def _bad_cases(user):
    d = user["dir"]
    img = user["img"]
    return {
        "whole pickled model": ["predict", img, "--model", d / "whole.pt"],
        "payload pickle": ["predict", img, "--model", d / "evil.pth"],
        "plain pickle": ["explain", img, "--model", d / "plain.bin", "--methods", "gradcam", "--out", d / "o"],
        "junk file": ["predict", img, "--model", d / "junk.pt"],
        "missing file": ["predict", img, "--model", d / "absent.pth"],
        "label count": ["predict", img, "--model", user["pth"], "--labels", d / "two.txt"],
        "missing labels": ["predict", img, "--model", user["pth"], "--labels", d / "absent.txt"],
        "bad mean": ["predict", img, "--model", user["pth"], "--mean", "0.5,0.5"],
        "bad std": ["predict", img, "--model", user["pth"], "--std", "1,0,1"],
        "input size": ["predict", img, "--model", user["pth"], "--input-size", "3"],
        "input size type": ["predict", img, "--model", user["pth"], "--input-size", "big"],
        "program size": ["predict", img, "--model", user["pt2"], "--input-size", "96"],
        "unknown arch": ["predict", img, "--model", user["pth"], "--arch", "resnet9000"],
        "wrong arch": ["predict", img, "--model", user["pth"], "--arch", "resnet34"],
        "torchscript cam": ["explain", img, "--model", user["ts"], "--input-size", str(SIZE), "--methods", "gradcam",
                            "--out", d / "o"],
    }


def test_bad_files_and_flags_give_one_line(user, capsys):
    for name, args in _bad_cases(user).items():
        try:
            code, _, err = cli(*args, capsys=capsys)
        except SystemExit as exc:  # argparse's own errors
            code, err = exc.code, capsys.readouterr().err
        assert code not in (0, None), name
        assert_one_line(err)
    assert not (user["dir"] / "pwned").exists()


@pytest.mark.parametrize("name", ["payload pickle", "torchscript cam",
                                  *(pytest.param(n, marks=pytest.mark.slow)
                                    for n in ("whole pickled model", "program size", "wrong arch", "plain pickle"))])
def test_bad_cases_in_a_real_process(user, cache_dir, name):
    """stderr of the real process: exactly one line (no warnings, logs or traceback)."""
    args = [str(a) for a in _bad_cases(user)[name]]
    proc = subprocess.run([sys.executable, "-m", "cnnviz_core", *args], capture_output=True, text=True,
                          timeout=300, cwd=user["dir"], env={**os.environ, "CNNVIZ_CACHE_DIR": str(cache_dir)})
    assert proc.returncode != 0
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert_one_line(proc.stderr)
    assert not (user["dir"] / "pwned").exists()


def test_every_model_command_takes_the_model_file_flags():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    with_model = {name: p for name, p in sub.choices.items()
                  if any("--model" in a.option_strings for a in p._actions)}
    assert {"predict", "explain", "filters", "maximize", "dream", "style", "audit"} <= set(with_model)
    for name, p in with_model.items():
        flags = {s for a in p._actions for s in a.option_strings}
        assert {"--arch", "--labels", "--input-size", "--mean", "--std"} <= flags, name


def test_visualize_commands_on_a_user_file(user, tmp_path, capsys):
    common = ["--model", user["pth"], "--labels", user["labels"], "--input-size", SIZE, "--device", "cpu"]
    code, out, err = cli("filters", *common, "--layer", "conv1", "--max-filters", 8, "--out", tmp_path / "f.png",
                         capsys=capsys)
    assert code == 0 and (tmp_path / "f.png").is_file(), err
    code, out, err = cli("maximize", *common, "--class", "bird", "--steps", 2, "--size", SIZE,
                         "--out", tmp_path / "m.png", capsys=capsys)
    assert code == 0 and (tmp_path / "m.png").is_file(), err
    code, out, err = cli("dream", user["img"], *common, "--layer", "layer2", "--octaves", 1, "--steps", 1,
                         "--max-side", SIZE, "--out", tmp_path / "d.png", capsys=capsys)
    assert code == 0 and (tmp_path / "d.png").is_file(), err
    code, _, err = cli("maximize", *common, "--class", "zebra", "--steps", 2, "--out", tmp_path / "z.png",
                       capsys=capsys)
    assert code != 0
    assert_one_line(err)


@pytest.fixture(scope="module")
def image_folder(user, tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    for i in range(3):
        photo(10 + i).save(d / f"img_{i}.png")
    return d


def test_audit_with_a_model_file_and_its_options(user, image_folder, tmp_path, capsys):
    from cnnviz_core.audit.results import read_results

    out = tmp_path / "audit"
    code, stdout, err = cli("audit", image_folder, "--model", user["pth"], "--labels", user["labels"],
                            "--input-size", SIZE, "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25",
                            "--methods", "gradcam,saliency", "--metrics", "deletion", "--steps", 4, "--no-ray",
                            "--quiet", "--device", "cpu", "--out", out, "--json", capsys=capsys)
    assert code == 0, err
    df = read_results(out).to_pandas()
    assert len(df) == 6 and (df["status"] == "ok").all(), df[["status", "error"]]
    assert set(df["prediction_name"]) <= set(LABELS) and set(df["target_name"]) <= set(LABELS)
    from cnnviz_core import UserModelOptions, load_image, load_model

    handle = load_model(user["pth"], device="cpu",
                        options=UserModelOptions(input_size=SIZE, mean=(0.5,) * 3, std=(0.25,) * 3))
    for path, name in zip(df["path"], df["prediction_name"]):
        with torch.no_grad():
            assert name == LABELS[int(user["model"](handle.preprocess(load_image(path))).argmax())]
    manifest = json.loads(next(out.glob("*audit.json")).read_text())
    assert manifest["options"]["input_size"] == SIZE and manifest["options"]["labels"] == list(LABELS)


def test_audit_bad_model_file_is_one_line(user, image_folder, tmp_path, capsys):
    code, _, err = cli("audit", image_folder, "--model", user["dir"] / "whole.pt", "--no-ray", "--out",
                       tmp_path / "a", capsys=capsys)
    assert code != 0
    assert_one_line(err)


def test_audit_config_with_options_pickles_and_loads_in_a_worker(user):
    """What a Ray actor gets: the config alone, pickled, must rebuild the same model."""
    from cnnviz_core import UserModelOptions
    from cnnviz_core.audit.worker import AuditConfig, AuditWorker

    options = UserModelOptions(labels=LABELS, input_size=SIZE, mean=(0.5,) * 3, std=(0.25,) * 3)
    config = AuditConfig(model=str(user["pth"]), methods=("gradcam",), device="cpu", options=options)
    again = pickle.loads(pickle.dumps(config))
    assert again == config
    worker = AuditWorker(again)
    assert worker.handle.class_names == list(LABELS) and worker.handle.input_size == SIZE
    assert worker.handle.spec.mean == (0.5,) * 3


def test_package_imports_from_any_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", "import cnnviz_core, sys; print(cnnviz_core.__file__)"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(os.path.join("cnnviz_core", "__init__.py"))
    assert proc.stderr == ""
