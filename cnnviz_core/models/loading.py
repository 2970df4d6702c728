"""The one loader behind the engine, the CLI and the app: a catalog name with a weights choice, or a
user's model file with what goes with it (:class:`~.userfiles.UserModelOptions`).

``load_model("resnet18")``                    torchvision ResNet-18, ImageNet weights from the cache
``load_model("resnet18", "ft.pth")``          the same architecture, the head sized by the file
``load_model("ft.pth")``                      architecture detected from the state_dict
``load_model("ft.pth", options=UserModelOptions(arch="timm:convnext_tiny", labels=(...)))``
``load_model("model.pt2")`` / ``"model.ts"``  a torch.export / TorchScript program
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Optional, Union

import torch

from ..device import resolve_device
from ..errors import ModelError, ParameterError, one_line
from .architectures import Architecture, Preprocessing
from .card import ModelSpec, spec_for
from .catalog import ModelEntry, get_architecture, get_entry
from .handle import ModelHandle
from .layers import conv_layer_paths, default_cam_layer
from .sources import ImageNetCache, ProgressFn, RandomInit, StateDictFile, WeightsSource
from .userfiles import (
    MODEL_SUFFIXES, UserModelOptions, detect_architecture, file_digest, is_program, read_program, read_state_dict,
    sidecar_options,
)

WeightsArg = Union[str, Path, None]


def is_model_file(text: Union[str, Path]) -> bool:
    """Whether ``--model``'s value names a file rather than a catalog model."""
    text = str(text)
    return Path(text).suffix.lower() in MODEL_SUFFIXES or os.sep in text


def load_model(
    name_or_path: Union[str, Path],
    weights: WeightsArg = "default",
    device: Union[str, torch.device, None] = "auto",
    *,
    options: Optional[UserModelOptions] = None,
    progress: Optional[ProgressFn] = None,
    allow_download: Optional[bool] = None,
) -> ModelHandle:
    """Load a catalog model by name, or a user model file, and return a :class:`ModelHandle`.

    ``weights`` (for a catalog name): ``"default"`` (its own: ImageNet for torchvision, the bundled
    file for ours, random for ZFNet and timm), ``"imagenet"``, ``None``/``"none"`` (random init,
    seed 0) or the path of a state_dict/checkpoint (any head size). ``options``: class names,
    preprocessing and layer that go with the file (a ``<file>.json`` sidecar fills what is not
    given). ``allow_download`` defaults to ``$CNNVIZ_OFFLINE`` not being set.
    """
    dev = resolve_device(device)
    if is_model_file(name_or_path):
        return load_user_model(Path(name_or_path), dev, options=options)
    entry = get_entry(str(name_or_path))
    source = weights_source(entry, weights)
    loaded = source.load(entry.architecture, progress=progress, allow_download=allow_download)
    user = (options or UserModelOptions()).validated()
    if not isinstance(source, StateDictFile):
        user = UserModelOptions(labels=user.labels, input_size=user.input_size, resize_size=user.resize_size,
                                mean=user.mean, std=user.std, default_layer=user.default_layer)
    elif weights is not None:
        user = user.over(sidecar_options(Path(str(weights))))
    spec = _spec_with(entry.architecture, loaded.class_names, user, name=entry.name)
    identity = f"{source.key}:{file_digest(Path(str(weights)))}" if isinstance(source, StateDictFile) else source.key
    return ModelHandle(spec, loaded.model, dev, loaded.label, identity=identity, notes=loaded.notes)


def weights_source(entry: ModelEntry, weights: WeightsArg) -> WeightsSource:
    """The source that a ``weights`` argument names for ``entry``."""
    choice = "none" if weights is None else str(weights)
    if choice.lower() == "none":
        return RandomInit()
    if choice.lower() == "default":
        return entry.default_source
    if choice.lower() == "imagenet":
        if not isinstance(entry.default_source, ImageNetCache):
            raise ParameterError(f"model {entry.name!r} has no ImageNet weights; use 'default', 'none' or a file")
        return entry.default_source
    return StateDictFile(Path(choice))


def _labels_for(classes: tuple[str, ...], labels: Optional[tuple[str, ...]], where: str) -> tuple[str, ...]:
    if labels is None:
        return classes
    if len(labels) != len(classes):
        raise ModelError(f"{where}: the labels give {len(labels)} names but the model has {len(classes)} outputs")
    return labels


def _spec_with(arch: Architecture, classes: Optional[tuple[str, ...]], user: UserModelOptions, *, name: str,
               display_name: Optional[str] = None, description: Optional[str] = None) -> ModelSpec:
    base = arch.preprocessing
    size = user.input_size or base.input_size
    resize = user.resize_size or (base.resize_size if size == base.input_size else size)
    prep = Preprocessing(input_size=size, resize_size=resize, mean=user.mean or base.mean, std=user.std or base.std)
    names = _labels_for(classes or arch.class_names, user.labels, name)
    return spec_for(arch, name=name, display_name=display_name, class_names=names, preprocessing=prep,
                    default_layer=user.default_layer, description=description)


def load_user_model(path: Path, device: torch.device, *, options: Optional[UserModelOptions] = None,
                    display_name: Optional[str] = None) -> ModelHandle:
    """Load a user's model file: a state_dict/checkpoint of a catalog architecture (detected, or
    named by ``options.arch``), a ``.pt2`` (torch.export) or TorchScript program.

    ``options`` win over the ``<file>.json`` sidecar, which wins over the defaults. Every refusal is
    one :class:`ModelError` line."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    user = (options or UserModelOptions()).over(sidecar_options(path)).validated()
    shown = display_name or path.name
    digest = file_digest(path)
    if is_program(path):
        return _load_program(path, device, user, shown, digest)
    read = read_state_dict(path)
    arch_name = user.arch or detect_architecture(read.state, shown)
    try:
        arch = get_architecture(arch_name)
    except ModelError as exc:
        raise ModelError(f"{shown}: {exc}") from None
    source = StateDictFile(path)
    loaded = source.load(arch)
    notes = tuple(read.notes) + (() if user.arch else (f"architecture detected: {arch.name}",))
    spec = _spec_with(arch, loaded.class_names, user, name=f"{arch.name}:{shown}",
                      display_name=f"{shown} ({arch.name}, your file)",
                      description=f"your file {shown}: {arch.name} with {len(loaded.class_names or arch.class_names)} "
                                  "classes")
    return ModelHandle(spec, loaded.model, device, f"file {shown} (sha256 {digest[:12]})",
                       identity=f"file:{digest}", notes=notes)


def _load_program(path: Path, device: torch.device, user: UserModelOptions, shown: str, digest: str) -> ModelHandle:
    program = read_program(path)
    size = program.fixed_size or user.input_size or 224
    if program.fixed_size and user.input_size and user.input_size != program.fixed_size:
        raise ModelError(f"{shown}: the program was exported for {program.fixed_size}x{program.fixed_size} inputs "
                         f"and cannot run at {user.input_size} px; drop the input size or re-export with dynamic shapes")
    module = program.module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, 3, size, size))
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        first = one_line(str(exc).strip().splitlines()[0], 140) if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{shown}: the program does not run on a 1x3x{size}x{size} input ({first}); "
                         "give its input size (--input-size or the sidecar)") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ModelError(f"{shown}: the program returns {type(out).__name__} "
                         f"{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}; cnnviz needs (N, classes) logits")
    num = int(out.shape[1])
    from .catalog import IMAGENET_CLASSES

    classes = IMAGENET_CLASSES if num == 1000 else tuple(f"class {i}" for i in range(num))
    layer = user.default_layer or default_cam_layer(module, size, device="cpu") or \
        next(iter(conv_layer_paths(module)[-1:]), "")
    resize = user.resize_size or (256 if size == 224 else size)
    arch = Architecture(name=f"file:{shown}", display_name=f"{shown} (your {program.kind})", builder=lambda: module,
                        class_names=classes, default_layer=layer,
                        preprocessing=Preprocessing(input_size=size, resize_size=resize,
                                                    mean=user.mean or Preprocessing().mean,
                                                    std=user.std or Preprocessing().std))
    spec = replace(_spec_with(arch, None, UserModelOptions(labels=user.labels), name=f"file:{shown}",
                              description=f"your {program.kind} {shown}, {size} px input, {num} classes"),
                   architecture="")
    notes = (f"{program.kind}, input {size} px" + (" (fixed by the program)" if program.fixed_size else ""),)
    if not program.hookable:
        notes += ("TorchScript cannot be hooked: layer methods (CAM family, guided backprop, deconvnet) need a "
                  "state_dict or a .pt2; saliency, Integrated Gradients, SmoothGrad and occlusion work",)
    return ModelHandle(spec, module, device, f"{program.kind} {shown} (sha256 {digest[:12]})",
                       identity=f"file:{digest}", notes=notes, hookable=program.hookable,
                       max_batch=program.fixed_batch)


__all__ = ["ModelSpec", "UserModelOptions", "WeightsArg", "is_model_file", "load_model", "load_user_model",
           "weights_source"]
