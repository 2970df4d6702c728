"""Load models safely: registry names with their weights, and user model files.

Nothing is ever unpickled beyond tensors and plain containers: state_dicts go through
``torch.load(weights_only=True)`` or safetensors, programs through ``torch.export.load`` or
TorchScript. ImageNet weights use torchvision's weights API and cache (``$TORCH_HOME``) and load
offline when the file is already there.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.request
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from ..device import resolve_device
from ..errors import ModelError, ParameterError, WeightsUnavailableError
from .handle import ModelHandle
from .registry import ModelSpec, get_spec, hub_checkpoint_path, list_specs

ProgressFn = Callable[[float, str], None]
WeightsArg = Union[str, Path, None]
RANDOM_SEED = 0
USER_MODEL_SUFFIXES = (".pt2", ".pt", ".pth", ".ts", ".torchscript", ".safetensors")
_HASH_RE = re.compile(r"-([a-f0-9]+)\.")


def load_model(
    name_or_path: Union[str, Path],
    weights: WeightsArg = "default",
    device: Union[str, torch.device, None] = "auto",
    *,
    progress: Optional[ProgressFn] = None,
    allow_download: Optional[bool] = None,
) -> ModelHandle:
    """Load a registered model by name, or a user model file, and return a :class:`ModelHandle`.

    ``weights``: ``"default"`` (the model's own trained weights: ImageNet for the torchvision zoo,
    the committed file for ours, random for ZFNet), ``"imagenet"``, ``None``/``"none"`` (random
    init with seed 0) or the path of a state_dict (``.pt``/``.pth``/``.safetensors``).
    ``allow_download`` defaults to ``$CNNVIZ_OFFLINE`` not being set.
    """
    dev = resolve_device(device)
    text = str(name_or_path)
    if Path(text).suffix.lower() in USER_MODEL_SUFFIXES or os.sep in text:
        return load_user_model(Path(text), dev)
    spec = get_spec(text)
    label, model = _build_with_weights(spec, weights, progress, allow_download)
    return ModelHandle(spec, model, dev, label)


def _random_model(spec: ModelSpec) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        return spec.build()


def _build_with_weights(
    spec: ModelSpec, weights: WeightsArg, progress: Optional[ProgressFn], allow_download: Optional[bool]
) -> tuple[str, nn.Module]:
    choice = "none" if weights is None else str(weights)
    if choice.lower() == "none":
        return f"random init (seed {RANDOM_SEED})", _random_model(spec)
    if choice.lower() in ("default", "imagenet"):
        if choice.lower() == "imagenet" and spec.family != "imagenet":
            raise ParameterError(f"model {spec.name!r} has no ImageNet weights; use 'default', 'none' or a file")
        if spec.family == "ours":
            return "bundled", _load_state_into(spec, _read_state_dict(spec.weights_file), strict=True)
        if spec.weights_enum is None:
            return f"untrained: random init (seed {RANDOM_SEED})", _random_model(spec)
        path = ensure_checkpoint(spec, progress=progress, allow_download=allow_download)
        state = spec.weights_enum.get_state_dict(progress=False, weights_only=True, map_location="cpu")
        from .zoo import finish_zoo_model

        model = finish_zoo_model(spec.name, _load_state_into(spec, state, strict=True))
        return f"ImageNet ({path.name})", model
    path = Path(choice)
    return f"file {path.name}", _load_state_into(spec, _read_state_dict(path), strict=True)


def _load_state_into(spec: ModelSpec, state: dict[str, torch.Tensor], *, strict: bool) -> nn.Module:
    """Build ``spec``'s architecture on the meta device (no random init cost) and assign ``state``."""
    with torch.device("meta"):
        model = spec.build()
    try:
        model.load_state_dict(state, strict=strict, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:2])[:300]
        raise ModelError(f"weights do not fit {spec.name!r}: {detail}") from None
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        raise ModelError(f"weights for {spec.name!r} lack tensors: {', '.join(leftover[:5])}")
    return model


def _read_state_dict(path: Optional[Path]) -> dict[str, torch.Tensor]:
    """Read a state_dict from ``.safetensors`` or a ``torch.save`` file, refusing arbitrary pickles."""
    if path is None or not Path(path).is_file():
        raise ModelError(f"weights file not found: {path}")
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"{path.name}: not a valid safetensors file ({exc})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError...: all mean "not safe/valid"
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{path.name}: refused - not a plain tensor state_dict loadable with weights_only=True ({reason})"
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path.name}: expected a state_dict (name -> tensor), got {type(obj).__name__}")
    return obj


# ---- ImageNet checkpoints in torchvision's cache ------------------------------------------------
def ensure_checkpoint(
    spec: ModelSpec, *, progress: Optional[ProgressFn] = None, allow_download: Optional[bool] = None
) -> Path:
    """Path of ``spec``'s ImageNet checkpoint in the torch hub cache, downloading it if allowed."""
    url = spec.weights_enum.url
    path = hub_checkpoint_path(url)
    if path.is_file():
        return path
    if allow_download is None:
        allow_download = not os.environ.get("CNNVIZ_OFFLINE")
    how = f"place {path.name} in {path.parent} (or set TORCH_HOME), downloaded from {url}"
    if not allow_download:
        raise WeightsUnavailableError(f"{spec.name} ImageNet weights are not in the cache; offline mode: {how}")
    try:
        download_file(url, path, progress=progress)
    except OSError as exc:
        raise WeightsUnavailableError(
            f"{spec.name} ImageNet weights ({spec.facts.get('file_mb', 0):.0f} MB) could not be downloaded "
            f"({type(exc).__name__}: {str(exc)[:80]}); {how}"
        ) from None
    return path


def download_file(url: str, dest: Path, *, progress: Optional[ProgressFn] = None, timeout: float = 20.0) -> Path:
    """Download ``url`` to ``dest`` atomically, reporting ``progress(fraction, text)``; checks the
    sha256 prefix that torchvision puts in file names (``resnet18-f37072fd.pth``)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    sha = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        while chunk := response.read(1 << 20):
            out.write(chunk)
            sha.update(chunk)
            done += len(chunk)
            if progress is not None:
                frac = done / total if total else 0.0
                progress(min(frac, 1.0), f"{done / 2**20:.1f} / {total / 2**20:.1f} MB")
    match = _HASH_RE.search(dest.name)
    if match and not sha.hexdigest().startswith(match.group(1)):
        tmp.unlink(missing_ok=True)
        raise OSError(f"checksum mismatch for {dest.name}")
    tmp.replace(dest)
    return dest


# ---- user model files ---------------------------------------------------------------------------
def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names)


def _user_spec(path: Path, model: nn.Module, meta: dict[str, Any]) -> ModelSpec:
    size = int(meta.get("input_size", 224))
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, size, size))
    num = int(out.shape[-1])
    classes = meta.get("classes")
    if classes is None:
        from .zoo import IMAGENET_CLASSES

        classes = IMAGENET_CLASSES if num == 1000 else tuple(f"class {i}" for i in range(num))
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return ModelSpec(
        name=f"file:{path.name}",
        display_name=f"{path.name} (your file)",
        family="ours",
        build=lambda: model,
        class_names=tuple(classes),
        default_layer=meta.get("default_layer") or (convs[-1] if convs else ""),
        input_size=size,
        resize_size=int(meta.get("resize_size", size if meta.get("input_size") else 256)),
        mean=tuple(meta.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(meta.get("std", (0.229, 0.224, 0.225))),
        description=f"user model loaded from {path}",
    )


def load_user_model(path: Path, device: torch.device) -> ModelHandle:
    """Load a ``.pt2`` (torch.export), TorchScript, or state_dict file of a registered architecture.

    An optional ``<file>.json`` beside it may give ``classes``, ``input_size``, ``mean``, ``std``,
    ``default_layer`` (and ``arch`` for a state_dict).
    """
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    sidecar = path.with_suffix(path.suffix + ".json")
    meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    suffix = path.suffix.lower()
    try:
        if suffix == ".pt2":
            program = torch.export.load(str(path))
            model = torch.export.unflatten(program)
            label = "torch.export program"
        elif suffix in (".ts", ".torchscript") or (suffix in (".pt", ".pth") and _is_torchscript(path)):
            model = torch.jit.load(str(path), map_location="cpu")
            label = "TorchScript"
        else:
            state = _read_state_dict(path)
            spec = _match_architecture(state, meta.get("arch"), path)
            model = _load_state_into(spec, state, strict=True)
            if spec.family == "imagenet":
                from .zoo import finish_zoo_model

                model = finish_zoo_model(spec.name, model)
            return ModelHandle(replace(spec, name=f"{spec.name}:{path.name}"), model, device, f"file {path.name}")
    except (ModelError, ParameterError):
        raise
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path.name}: could not load as a model ({reason})") from None
    return ModelHandle(_user_spec(path, model, meta), model, device, label)


def _match_architecture(state: dict[str, torch.Tensor], arch: Optional[str], path: Path) -> ModelSpec:
    """The registered architecture whose parameter names and shapes equal ``state``'s."""
    if arch:
        return get_spec(arch)
    wanted = {k: tuple(v.shape) for k, v in state.items()}
    for spec in list_specs():
        with torch.device("meta"):
            model = spec.build()
        have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if have == wanted:
            return spec
    raise ModelError(
        f"{path.name}: a state_dict that fits no registered architecture; "
        f"add {path.name}.json with {{\"arch\": NAME}} or export the model with torch.export (.pt2)"
    )
