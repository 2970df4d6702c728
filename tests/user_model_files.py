"""Realistic model files as users have them, built inside the tests (seeded, small inputs).

Shared by tests/models/test_userfiles.py, tests/models/test_userfiles_parity.py and
tests/cli/test_user_model_cli.py (``tests/`` is on ``sys.path`` through ``tests/conftest.py``).
"""
from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

SIZE = 64  # px: every file is used at this input size (small and fast on 2 cores)
WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "ema", "model_ema")
PREFIXES = ("module.", "model.", "_orig_mod.")
_ESCAPE_OR_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def fine_tuned(name: str, num_classes: int, seed: int = 0) -> nn.Module:
    """A torchvision classifier with a head of ``num_classes`` outputs, as after fine-tuning: seeded
    random weights and non-trivial BatchNorm statistics (so a buffer that fails to load shows)."""
    torch.manual_seed(seed)
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model.eval()


def timm_model(name: str, num_classes: int, seed: int = 0) -> nn.Module:
    import timm

    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, num_classes=num_classes).eval()


def save_state(model: nn.Module, path: Path, *, wrapper: Optional[str] = None, prefix: str = "") -> Path:
    """``torch.save`` of the state_dict, optionally inside a training checkpoint under ``wrapper``
    and with every key prefixed (DataParallel ``module.``, Lightning ``model.``, torch.compile
    ``_orig_mod.``)."""
    state = {prefix + k: v for k, v in model.state_dict().items()}
    obj = state if wrapper is None else {
        "epoch": 7, "global_step": 700, wrapper: state, "best_acc": 0.93,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.9, "params": [0, 1]}]},
    }
    torch.save(obj, path)
    return path


def save_lightning(model: nn.Module, path: Path) -> Path:
    """A PyTorch Lightning checkpoint: ``state_dict`` keys carry the LightningModule's ``model.``."""
    torch.save({
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 3}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": torch.tensor(0.3)}},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.001}]}], "lr_schedulers": [],
        "hparams_name": "kwargs", "hyper_parameters": {"lr": 0.001, "num_classes": 3},
    }, path)
    return path


def save_safetensors(model: nn.Module, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def export_program(model: nn.Module, path: Path, size: int = SIZE, *, dynamic: bool = False) -> Path:
    """``torch.export`` at ``size`` px (static), or with dynamic H and W (``torch.export.Dim``)."""
    x = torch.randn(1, 3, size, size)
    shapes = None
    if dynamic:
        h, w = torch.export.Dim("height", min=48, max=512), torch.export.Dim("width", min=48, max=512)
        shapes = {"x": {2: h, 3: w}}
    program = torch.export.export(model, (x,), dynamic_shapes=shapes)
    torch.export.save(program, str(path))
    return path


def trace_script(model: nn.Module, path: Path, size: int = SIZE) -> Path:
    torch.jit.trace(model, torch.randn(1, 3, size, size)).save(str(path))
    return path


class RunsCodeOnLoad:
    """Pickles into ``os.system("touch MARKER")``: plain unpickling would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def rewrite_zip(src: Path, dst: Path, edit: Callable[[str, bytes], bytes]) -> Path:
    """Copy a zip archive entry by entry through ``edit(name, data)`` (to craft hostile .pt2 files)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, edit(name, zin.read(name)))
    return dst


def evil_pickle_bytes(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save(RunsCodeOnLoad(marker), buf)
    return buf.getvalue()


def edit_program_json(edit: Callable[[dict], None]) -> Callable[[str, bytes], bytes]:
    def on_entry(name: str, data: bytes) -> bytes:
        if name.endswith("models/model.json"):
            doc = json.loads(data)
            edit(doc)
            return json.dumps(doc).encode()
        return data
    return on_entry


def photo(seed: int = 0, size: tuple[int, int] = (96, 80)) -> Image.Image:
    """A seeded, smooth, non-square RGB image (so resize and centre crop both do something)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.BILINEAR)


def assert_one_line(message: str) -> None:
    """A message a user can read in a terminal: one line, no escape codes or control characters,
    no traceback."""
    text = message[:-1] if message.endswith("\n") else message
    assert text and "\n" not in text, f"not one line: {message!r}"
    assert not _ESCAPE_OR_CONTROL.search(text), f"control characters in {message!r}"
    assert "Traceback" not in text and 'File "' not in text, message
