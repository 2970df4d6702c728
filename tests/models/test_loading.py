"""Model loading: registry names and weights forms, torchvision's cache offline, user files, safety."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnviz_core import load_model
from cnnviz_core.errors import ModelError, ParameterError, WeightsUnavailableError
from cnnviz_core.models import get_architecture, get_entry


def build_zoo_model(name: str) -> nn.Module:
    return get_architecture(name).build()


def _params_equal(a: nn.Module, b_state: dict) -> bool:
    return all(torch.equal(t.cpu(), b_state[k]) for k, t in a.state_dict().items())


def test_random_init_is_seeded_and_frozen():
    a = load_model("resnet18", weights=None)
    b = load_model("resnet18", weights="none")
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert not any(p.requires_grad for p in a.model.parameters())
    assert not a.model.training


def test_torchvision_checkpoint_in_temporary_torch_home_loads_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CNNVIZ_OFFLINE", "1")
    entry = get_entry("resnet18")
    path = entry.imagenet.path
    assert path.parent == tmp_path / "hub" / "checkpoints"
    assert entry.readiness().status == "needs download"
    torch.manual_seed(123)
    state = build_zoo_model("resnet18").state_dict()
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    assert entry.readiness().status == "ready"
    for weights in ("imagenet", "default"):
        handle = load_model("resnet18", weights=weights)
        assert _params_equal(handle.model, state)
        assert "ImageNet" in handle.weights_label
    assert handle.predict(torch.zeros(1, 3, 224, 224), topk=3)[0][1] in entry.architecture.class_names


def test_missing_checkpoint_offline_gives_actionable_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CNNVIZ_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as exc:
        load_model("resnet18")
    msg = str(exc.value)
    assert "\n" not in msg and "resnet18-f37072fd.pth" in msg and str(tmp_path) in msg


def test_imagenet_weights_refused_for_our_models():
    with pytest.raises(ParameterError, match="no ImageNet weights"):
        load_model("shapes-cnn", weights="imagenet")


def test_unknown_model_name():
    with pytest.raises(ModelError, match="unknown model"):
        load_model("resnet9000")


def test_state_dict_path_for_registered_architecture(tmp_path):
    torch.manual_seed(5)
    state = build_zoo_model("zfnet").state_dict()
    path = tmp_path / "zf.pth"
    torch.save(state, path)
    handle = load_model("zfnet", weights=str(path))
    assert _params_equal(handle.model, state)


def test_state_dict_of_wrong_architecture_refused(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.save(build_zoo_model("resnet18").state_dict(), path)
    with pytest.raises(ModelError, match="do not fit"):
        load_model("zfnet", weights=str(path))


def test_user_state_dict_file_architecture_inferred(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(7)
    state = build_zoo_model("squeezenet1_1").state_dict()
    for name, saver in (("sq.pt", lambda s, p: torch.save(s, p)), ("sq.safetensors", lambda s, p: save_file(s, str(p)))):
        path = tmp_path / name
        saver(state, path)
        handle = load_model(str(path))
        assert handle.spec.default_layer == "features.12"
        assert _params_equal(handle.model, state)


class _RunsCodeOnLoad:
    """Pickles into a call of os.system: loading it with plain pickle would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_and_code_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(2), "payload": _RunsCodeOnLoad(marker)}, path)
    assert not marker.exists()
    for call in (lambda: load_model(str(path)), lambda: load_model("zfnet", weights=str(path))):
        with pytest.raises(ModelError) as exc:
            call()
        assert "refused" in str(exc.value) and "\n" not in str(exc.value)
    assert not marker.exists()
    # Sanity check of the test itself: unrestricted unpickling WOULD run the payload.
    with open(path, "rb") as f:
        torch.load(f, weights_only=False)
    assert marker.exists()


def test_whole_pickled_module_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3)), path)
    with pytest.raises(ModelError, match="refused"):
        load_model(str(path))


def test_corrupt_model_file(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a model")
    with pytest.raises(ModelError):
        load_model(str(path))
    with pytest.raises(ModelError, match="not found"):
        load_model(str(tmp_path / "absent.pt2"))


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.head(x.mean(dim=(2, 3)))


def test_torch_export_program_loads_and_predicts(tmp_path):
    torch.manual_seed(0)
    net = _TinyNet().eval()
    x = torch.randn(1, 3, 32, 32)
    path = tmp_path / "tiny.pt2"
    torch.export.save(torch.export.export(net, (x,)), str(path))
    (tmp_path / "tiny.pt2.json").write_text('{"input_size": 32, "classes": ["a", "b", "c", "d"]}')
    handle = load_model(str(path))
    assert handle.class_names == ["a", "b", "c", "d"]
    assert torch.allclose(handle.forward(x), net(x), atol=1e-5)
    assert "conv" in handle.conv_layers


def test_torchscript_loads_and_predicts(tmp_path):
    torch.manual_seed(0)
    net = _TinyNet().eval()
    x = torch.randn(1, 3, 32, 32)
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.trace(net, x), str(path))
    handle = load_model(str(path))
    assert handle.num_classes == 4
    assert torch.allclose(handle.forward(x), net(x), atol=1e-5)


def test_result_key_names_the_file_and_what_changes_results(tmp_path):
    from cnnviz_core import UserModelOptions

    torch.manual_seed(3)
    path = tmp_path / "ft.pth"
    torch.save(build_zoo_model("squeezenet1_1").state_dict(), path)
    plain = load_model(str(path))
    labelled = load_model(str(path), options=UserModelOptions(labels=tuple(f"n{i}" for i in range(1000))))
    normalized = load_model(str(path), options=UserModelOptions(mean=(0.5, 0.5, 0.5)))
    assert len({plain.key, labelled.key, normalized.key}) == 3
    assert plain.key == load_model(str(path)).key
    other = tmp_path / "other" / "ft.pth"  # same name, other weights
    other.parent.mkdir()
    torch.manual_seed(4)
    torch.save(build_zoo_model("squeezenet1_1").state_dict(), other)
    assert load_model(str(other)).key != plain.key
