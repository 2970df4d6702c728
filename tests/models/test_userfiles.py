"""User model files, built here as people really have them: fine-tuned torchvision heads of several
sizes, every checkpoint wrapper and key prefix, safetensors, torch.export programs (static 64 px and
dynamic H/W), TorchScript, timm, labels and sidecars, and hostile files. Each loadable file is
checked against the original module's own logits on the exact same preprocessed input; each refusal
is one plain line."""
from __future__ import annotations

import json
import os
import pickle
import threading

import pytest
import torch
import torchvision.transforms.functional as TF
from torch import nn

from cnnviz_core import MethodUnavailableError, ModelError, ParameterError, UserModelOptions, explain, load_model
from cnnviz_core.models import read_labels, userfiles
from cnnviz_core.models.userfiles import SignatureIndex, read_program
from user_model_files import (
    PREFIXES, SIZE, WRAPPERS, RunsCodeOnLoad, assert_one_line, edit_program_json, evil_pickle_bytes, export_program,
    fine_tuned, photo, rewrite_zip, save_lightning, save_safetensors, save_state, timm_model, trace_script,
)

FAST_CASES = [("resnet18", 3), ("mobilenet_v3_small", 7), ("efficientnet_b0", 4), ("squeezenet1_1", 6)]
SLOW_CASES = [("vgg11_bn", 2), ("densenet121", 5)]
AT_64 = UserModelOptions(input_size=SIZE)


@pytest.fixture(scope="session", autouse=True)
def signature_cache(tmp_path_factory):
    """The signature index lives in a temporary CNNVIZ_CACHE_DIR, never in ~/.cache."""
    path = tmp_path_factory.getbasetemp() / "cnnviz-cache"
    path.mkdir(exist_ok=True)
    old = os.environ.get("CNNVIZ_CACHE_DIR")
    os.environ["CNNVIZ_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("CNNVIZ_CACHE_DIR", None)
    else:
        os.environ["CNNVIZ_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """``files(name, classes)`` -> (original module, its .pth state_dict), built once per module."""
    root = tmp_path_factory.mktemp("user_models")
    made: dict = {}

    def get(name: str, classes: int):
        if (name, classes) not in made:
            model = fine_tuned(name, classes, seed=classes)
            made[name, classes] = model, save_state(model, root / f"{name}_{classes}.pth")
        return made[name, classes]
    return get


def same_logits(handle, model: nn.Module, image=None) -> torch.Tensor:
    """The handle's logits equal the original module's on the handle's own preprocessed input."""
    x = handle.preprocess(image or photo(1))
    assert x.shape == (1, 3, handle.input_size, handle.input_size)
    ours = handle.forward(x)
    with torch.no_grad():
        theirs = model.eval()(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    assert handle.predict(x, topk=1)[0][0] == int(theirs.argmax())
    return x


# ---- state_dicts of fine-tuned torchvision heads ----------------------------------------------
@pytest.mark.parametrize("name,classes", FAST_CASES, ids=[f"{n}-{c}" for n, c in FAST_CASES])
def test_fine_tuned_head_detected_and_matches_the_model(files, name, classes):
    model, path = files(name, classes)
    handle = load_model(path, device="cpu", options=AT_64)
    assert handle.spec.architecture == name and handle.num_classes == classes
    assert f"architecture detected: {name}" in handle.notes
    assert handle.class_names == [f"class {i}" for i in range(classes)]
    assert handle.default_layer and handle.module(handle.default_layer) is not None
    same_logits(handle, model)


@pytest.mark.slow
@pytest.mark.parametrize("name,classes", SLOW_CASES, ids=[f"{n}-{c}" for n, c in SLOW_CASES])
def test_fine_tuned_heads_of_large_architectures(files, name, classes):
    model, path = files(name, classes)
    handle = load_model(path, device="cpu", options=AT_64)
    assert handle.spec.architecture == name and handle.num_classes == classes
    same_logits(handle, model)
    if name == "vgg11_bn":  # the last spatial map, not the fixed-size adaptive pool after it
        assert handle.default_layer == "features"


def test_head_sized_by_the_file_for_a_named_architecture(files):
    model, path = files("resnet18", 3)
    handle = load_model("resnet18", weights=str(path), device="cpu", options=AT_64)
    assert handle.num_classes == 3
    same_logits(handle, model)


def test_preprocessing_follows_the_options_exactly(files):
    model, path = files("resnet18", 3)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    handle = load_model(path, device="cpu", options=UserModelOptions(input_size=SIZE, mean=mean, std=std))
    image = photo(2, (120, 90))
    x = same_logits(handle, model, image)
    manual = TF.center_crop(TF.resize(image, SIZE, antialias=True), [SIZE, SIZE])
    manual = TF.normalize(TF.pil_to_tensor(manual).float().div(255).unsqueeze(0), mean, std)
    torch.testing.assert_close(x, manual)


# ---- checkpoint wrappers and key prefixes --------------------------------------------------------
@pytest.mark.parametrize("wrapper,prefix", list(zip(WRAPPERS, ["", "module.", "model.", "_orig_mod.", "module.", ""])))
def test_checkpoint_wrappers_are_unwrapped(files, tmp_path, wrapper, prefix):
    model, _ = files("squeezenet1_1", 3)
    path = save_state(model, tmp_path / f"{wrapper}.ckpt", wrapper=wrapper, prefix=prefix)
    handle = load_model(path, device="cpu", options=AT_64)
    assert f"weights from checkpoint key {wrapper!r}" in handle.notes
    assert any(prefix in n for n in handle.notes if "prefix" in n) == bool(prefix)
    same_logits(handle, model)


@pytest.mark.parametrize("prefix", [*PREFIXES, "module._orig_mod."])
def test_key_prefixes_are_stripped(files, tmp_path, prefix):
    model, _ = files("squeezenet1_1", 3)
    handle = load_model(save_state(model, tmp_path / "p.pth", prefix=prefix), device="cpu", options=AT_64)
    assert f"stripped key prefix {prefix!r}" in handle.notes
    same_logits(handle, model)


def test_lightning_checkpoint(files, tmp_path):
    model, _ = files("resnet18", 3)
    handle = load_model(save_lightning(model, tmp_path / "epoch=3-step=120.ckpt"), device="cpu", options=AT_64)
    assert handle.spec.architecture == "resnet18"
    same_logits(handle, model)


def test_safetensors(files, tmp_path):
    model, _ = files("mobilenet_v3_small", 7)
    handle = load_model(save_safetensors(model, tmp_path / "model.safetensors"), device="cpu", options=AT_64)
    assert handle.num_classes == 7
    same_logits(handle, model)


# ---- labels and sidecars -------------------------------------------------------------------------
def test_labels_one_per_line_or_json_list():
    text = "\ufeffcat\r\n\r\n  dog  \r\n\x1b[31mbird\x1b[0m\r\n".encode("utf-8")
    assert read_labels(text) == ("cat", "dog", "bird")
    assert read_labels(b'["cat", "dog", "bird"]') == ("cat", "dog", "bird")
    for bad in (b"", b"\n\n", b"[1, ", b"\xff\xfe\x00", b"[]"):
        with pytest.raises(ModelError) as exc:
            read_labels(bad, "labels.txt")
        assert_one_line(str(exc.value))


def test_labels_name_the_classes_and_a_wrong_count_is_one_line(files):
    model, path = files("resnet18", 3)
    handle = load_model(path, device="cpu", options=UserModelOptions(input_size=SIZE, labels=("cat", "dog", "bird")))
    x = same_logits(handle, model)
    assert handle.predict(x, topk=1)[0][1] == ("cat", "dog", "bird")[int(model(x).argmax())]
    with pytest.raises(ModelError) as exc:
        load_model(path, device="cpu", options=UserModelOptions(labels=("cat", "dog")))
    assert_one_line(str(exc.value))
    assert "2 names" in str(exc.value) and "3 outputs" in str(exc.value)


def test_sidecar_supplies_what_goes_with_the_file_and_flags_win(files, tmp_path):
    model, _ = files("resnet18", 3)
    path = save_state(model, tmp_path / "ft.pth")
    (tmp_path / "names.txt").write_text("ant\nbee\nwasp\n")
    (tmp_path / "ft.pth.json").write_text(json.dumps({
        "arch": "resnet18", "labels": "names.txt", "input_size": SIZE, "resize_size": 72,
        "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "default_layer": "layer3"}))
    handle = load_model(path, device="cpu")
    spec = handle.spec
    assert (spec.input_size, spec.resize_size, spec.mean, spec.std) == (SIZE, 72, (0.5,) * 3, (0.25,) * 3)
    assert handle.class_names == ["ant", "bee", "wasp"] and handle.default_layer == "layer3"
    assert not any("detected" in n for n in handle.notes)  # the sidecar named it
    same_logits(handle, model)
    mine = load_model(path, device="cpu", options=UserModelOptions(labels=("x", "y", "z"), input_size=48))
    assert mine.class_names == ["x", "y", "z"] and mine.input_size == 48 and mine.spec.mean == (0.5,) * 3
    (tmp_path / "ft.pth.json").write_text("{not json")
    with pytest.raises(ModelError) as exc:
        load_model(path, device="cpu")
    assert_one_line(str(exc.value))


@pytest.mark.parametrize("options", [UserModelOptions(input_size=4), UserModelOptions(std=(0.0, 1.0, 1.0)),
                                     UserModelOptions(mean=(0.5, 0.5))])
def test_bad_options_are_one_line(files, options):
    _, path = files("resnet18", 3)
    with pytest.raises(ParameterError) as exc:
        load_model(path, device="cpu", options=options)
    assert_one_line(str(exc.value))


# ---- programs: torch.export and TorchScript ----------------------------------------------------
@pytest.fixture(scope="module")
def resnet3(files):
    return files("resnet18", 3)[0]


def test_export_program_at_a_non_default_size(resnet3, tmp_path):
    path = export_program(resnet3, tmp_path / "r18_64.pt2", SIZE)
    handle = load_model(path, device="cpu")
    assert handle.input_size == SIZE and handle.num_classes == 3 and handle.default_layer == "layer4"
    assert any("fixed by the program" in n for n in handle.notes)
    x = same_logits(handle, resnet3)
    batch = torch.cat([x, x.flip(-1), -x])  # a program exported at batch 1 still takes batches
    torch.testing.assert_close(handle.forward(batch), resnet3(batch), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(handle.batch_logits(batch), resnet3(batch), rtol=1e-3, atol=1e-4)
    assert explain(handle, x, "gradcam", cache=None)["gradcam"].shape == (SIZE, SIZE)
    with pytest.raises(ModelError) as exc:
        load_model(path, device="cpu", options=UserModelOptions(input_size=96))
    assert_one_line(str(exc.value))
    assert "64x64" in str(exc.value)


@pytest.mark.slow
def test_export_program_with_dynamic_height_and_width(resnet3, tmp_path):
    path = export_program(resnet3, tmp_path / "r18_dyn.pt2", dynamic=True)
    assert load_model(path, device="cpu").input_size == 224  # nothing fixed: the usual default
    handle = load_model(path, device="cpu", options=UserModelOptions(input_size=96))
    assert handle.input_size == 96
    same_logits(handle, resnet3)
    with pytest.raises(ModelError) as exc:  # below the exported minimum (48)
        load_model(path, device="cpu", options=UserModelOptions(input_size=32))
    assert_one_line(str(exc.value))
    assert "does not run" in str(exc.value)


def test_torchscript_predicts_saliency_works_and_layer_methods_say_why_not(resnet3, tmp_path):
    path = trace_script(resnet3, tmp_path / "r18.pt")  # TorchScript under the usual .pt suffix
    handle = load_model(path, device="cpu", options=AT_64)
    assert not handle.hookable and handle.num_classes == 3
    x = same_logits(handle, resnet3)
    target = int(resnet3(x).argmax())
    saliency = explain(handle, x, "saliency", target=target, cache=None)["saliency"]
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(resnet3(xg)[0, target], xg)
    torch.testing.assert_close(torch.tensor(saliency), grad[0], rtol=1e-3, atol=1e-6)
    for method in ("gradcam", "gradcam++", "scorecam", "guided_backprop"):
        with pytest.raises(MethodUnavailableError) as exc:
            explain(handle, x, method, target=target, cache=None)
        assert_one_line(str(exc.value))
        if method != "guided_backprop":  # attribution/: guided backprop says "needs ReLU activations"
            assert "TorchScript" in str(exc.value) and ".pt2" in str(exc.value)


# ---- timm --------------------------------------------------------------------------------------
def test_timm_model_needs_its_name_then_matches(tmp_path):
    model = timm_model("mobilenetv3_small_050", 5)
    path = save_state(model, tmp_path / "timm_mnv3.pth")
    with pytest.raises(ModelError) as exc:
        load_model(path, device="cpu")
    assert_one_line(str(exc.value))
    assert "timm:NAME" in str(exc.value)
    handle = load_model(path, device="cpu", options=UserModelOptions(arch="timm:mobilenetv3_small_050",
                                                                      input_size=SIZE))
    assert handle.num_classes == 5 and handle.default_layer
    same_logits(handle, model)
    with pytest.raises(ModelError) as exc:
        load_model(path, device="cpu", options=UserModelOptions(arch="timm:no_such_net_xyz"))
    assert_one_line(str(exc.value))


# ---- refusals ----------------------------------------------------------------------------------
def _payloads(tmp_path, marker, r18_pt2):
    """(file, how it was made): each one would create ``marker`` if its pickle or program ran."""
    evil = RunsCodeOnLoad(marker)
    out = []
    p = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(2, 3, 3, 3), "payload": evil}, p)
    out.append(p)
    p = tmp_path / "evil_legacy.pt"
    torch.save(evil, p, _use_new_zipfile_serialization=False)
    out.append(p)
    p = tmp_path / "evil_plain.bin"
    p.write_bytes(pickle.dumps({"state_dict": evil}))
    out.append(p)
    p = tmp_path / "evil_hparams.ckpt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(3, 4)}, "hyper_parameters": evil}, p)
    out.append(p)
    p = tmp_path / "evil.safetensors"
    p.write_bytes(pickle.dumps(evil))
    out.append(p)
    out.append(rewrite_zip(r18_pt2, tmp_path / "evil_inputs.pt2",  # torch.export.load unpickles these unsafely
                           lambda n, d: evil_pickle_bytes(marker) if n.endswith("sample_inputs/model.pt") else d))
    return out


def test_malicious_files_are_refused_and_their_payload_never_runs(resnet3, tmp_path):
    marker = tmp_path / "pwned"
    r18_pt2 = export_program(resnet3, tmp_path / "ok.pt2", SIZE)
    for path in _payloads(tmp_path, marker, r18_pt2):
        for call in (lambda: load_model(path, device="cpu"),
                     lambda: load_model("resnet18", weights=str(path), device="cpu")):
            with pytest.raises(ModelError) as exc:
                call()
            assert_one_line(str(exc.value))
            assert "refused" in str(exc.value) or "not a valid" in str(exc.value), str(exc.value)
        assert not marker.exists(), path.name
    # Sanity check of the test itself: unrestricted loading WOULD run these payloads.
    torch.load(tmp_path / "evil.pth", weights_only=False)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(Exception):  # noqa: B017 - the payload runs, then torch fails on the int it returned
        torch.export.load(str(tmp_path / "evil_inputs.pt2"))
    assert marker.exists()


def _hostile_programs(pt2_static, pt2_dynamic, tmp_path, marker):
    def target(doc):
        doc["graph_module"]["graph"]["nodes"][-1]["target"] = "torch.os.system"

    def guards(doc):
        doc["guards_code"] = [f"__import__('os').system('touch {marker}') == 0"]

    def sym(name, data):
        if name.endswith("models/model.json"):
            return data.replace(b"Symbol('s", f"__import__('os').system('touch {marker}') or Symbol('s".encode(), 1)
        return data

    def opaque(name, data):
        if name.endswith("constants_config.json"):
            return json.dumps({"config": {"obj": {"path_name": "opaque_obj_0", "use_pickle": False}}}).encode()
        return data

    return [rewrite_zip(pt2_static, tmp_path / "target.pt2", edit_program_json(target)),
            rewrite_zip(pt2_dynamic, tmp_path / "guards.pt2", edit_program_json(guards)),
            rewrite_zip(pt2_dynamic, tmp_path / "sym.pt2", sym),
            rewrite_zip(pt2_static, tmp_path / "opaque.pt2", opaque)]


def test_crafted_export_programs_are_refused_before_torch_reads_them(resnet3, tmp_path):
    marker = tmp_path / "pwned"
    static = export_program(resnet3, tmp_path / "s.pt2", SIZE)
    dynamic = export_program(resnet3, tmp_path / "d.pt2", dynamic=True)
    for path in _hostile_programs(static, dynamic, tmp_path, marker):
        with pytest.raises(ModelError) as exc:
            load_model(path, device="cpu")
        assert_one_line(str(exc.value))
        assert "refused" in str(exc.value)
        assert not marker.exists(), path.name
    # the symbolic-shape injection does run under a plain torch.export.load (sympify is eval)
    try:
        torch.export.load(str(tmp_path / "sym.pt2"))
    except Exception:  # noqa: BLE001 - whether torch then fails does not matter: the code ran
        pass
    assert marker.exists()


def test_whole_pickled_model_refused_in_one_plain_line(resnet3, tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(resnet3, path)
    with pytest.raises(ModelError) as exc:
        load_model(path, device="cpu")
    msg = str(exc.value)
    assert_one_line(msg)
    assert "torchvision.models.resnet.ResNet" in msg and "state_dict" in msg and ".pt2" in msg
    assert len(msg) < 400  # not "half of PyTorch's text"


@pytest.mark.parametrize("name,data", [
    ("junk.pt", b"not a model at all"), ("empty.pth", b""), ("trunc.pt", b"PK\x03\x04" + b"\0" * 40),
    ("junk.pt2", b"not a zip"), ("junk.safetensors", b"\x08\0\0\0\0\0\0\0{}"), ("junk.ts", b"PK\x05\x06" + b"\0" * 18),
])
def test_corrupt_files_are_one_line(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ModelError) as exc:
        load_model(path, device="cpu")
    assert_one_line(str(exc.value))


def test_a_checkpoint_without_weights_is_one_line(tmp_path):
    path = tmp_path / "opt.pt"
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, path)
    with pytest.raises(ModelError) as exc:
        load_model(path, device="cpu")
    assert_one_line(str(exc.value))


# ---- mismatched weights ------------------------------------------------------------------------
def test_mismatched_weights_name_the_first_offending_key_and_both_shapes(files, tmp_path):
    model, _ = files("resnet18", 3)
    state = model.state_dict()
    state["layer2.0.conv1.weight"] = torch.zeros(128, 32, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    for options in (None, UserModelOptions(arch="resnet18")):  # detected by names, or named
        with pytest.raises(ModelError) as exc:
            load_model(path, device="cpu", options=options)
        msg = str(exc.value)
        assert_one_line(msg)
        assert "layer2.0.conv1.weight" in msg and "[128, 32, 3, 3]" in msg and "[128, 64, 3, 3]" in msg
    with pytest.raises(ModelError) as exc:  # another architecture: the first key it lacks
        load_model(files("resnet18", 3)[1], device="cpu", options=UserModelOptions(arch="resnet34"))
    assert_one_line(str(exc.value))
    assert "layer1.2.conv1.weight" in str(exc.value) and "[64, 64, 3, 3]" in str(exc.value)
    state = dict(model.state_dict(), **{"extra.weight": torch.zeros(2)})
    torch.save(state, path)
    with pytest.raises(ModelError) as exc:
        load_model(path, device="cpu", options=UserModelOptions(arch="resnet18"))
    assert_one_line(str(exc.value))
    assert "extra.weight" in str(exc.value)


# ---- detection and its index -------------------------------------------------------------------
def test_no_match_lists_what_was_tried(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    path = tmp_path / "mine.pth"
    torch.save(net.state_dict(), path)
    with pytest.raises(ModelError) as exc:
        load_model(path, device="cpu")
    msg = str(exc.value)
    assert_one_line(msg)
    tried = SignatureIndex.names()
    assert f"{len(tried)} architectures" in msg and all(n in msg for n in ("resnet18", "vgg11_bn", "shapes-cnn"))
    assert "--arch" in msg and ".pt2" in msg


def test_ambiguity_lists_the_candidates(files, monkeypatch):
    _, path = files("resnet18", 3)
    index = SignatureIndex()
    sigs = dict(userfiles.INDEX.signatures())
    sigs["resnet18_twin"] = sigs["resnet18"]
    index._signatures = sigs
    monkeypatch.setattr(userfiles, "INDEX", index)
    with pytest.raises(ModelError) as exc:
        load_model(path, device="cpu")
    assert_one_line(str(exc.value))
    assert "resnet18, resnet18_twin" in str(exc.value) and "--arch" in str(exc.value)


def test_signature_index_is_built_once_then_read(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_CACHE_DIR", str(tmp_path / "cache"))
    subset = ["resnet18", "squeezenet1_1", "mobilenet_v3_small", "zfnet"]
    monkeypatch.setattr(SignatureIndex, "names", staticmethod(lambda: list(subset)))
    built: list[str] = []
    real = userfiles._signature
    monkeypatch.setattr(userfiles, "_signature", lambda arch: built.append(arch.name) or real(arch))
    index = SignatureIndex()
    threads = [threading.Thread(target=index.signatures) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(built) == sorted(subset)  # once, even with four concurrent first callers
    state = fine_tuned("squeezenet1_1", 3).state_dict()
    assert index.matches(state)[0] == ["squeezenet1_1"]
    index.signatures()
    assert len(built) == len(subset)
    files = list((tmp_path / "cache").glob("signatures-*.json"))
    assert len(files) == 1
    fresh = SignatureIndex()  # another process: reads the file, builds nothing
    assert fresh.matches(state)[0] == ["squeezenet1_1"] and len(built) == len(subset)
    subset.append("resnet34")  # a new torchvision builder: the cache no longer fits, rebuilt
    SignatureIndex().signatures()
    assert len(built) == 2 * len(subset) - 1


def test_detecting_again_builds_no_model(files, monkeypatch):
    _, first = files("squeezenet1_1", 6)
    load_model(first, device="cpu")  # the index exists after this

    def no_build(arch):
        raise AssertionError(f"signature of {arch.name} rebuilt")
    monkeypatch.setattr(userfiles, "_signature", no_build)
    _, second = files("mobilenet_v3_small", 7)
    assert load_model(second, device="cpu").spec.architecture == "mobilenet_v3_small"
    assert load_model(first, device="cpu").spec.architecture == "squeezenet1_1"


def test_program_reader_is_one_line_for_a_state_dict_named_pt2(files, tmp_path):
    _, path = files("squeezenet1_1", 3)
    wrong = tmp_path / "state.pt2"
    wrong.write_bytes(path.read_bytes())
    with pytest.raises(ModelError) as exc:
        read_program(wrong)
    assert_one_line(str(exc.value))
