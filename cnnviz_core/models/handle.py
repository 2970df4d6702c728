"""`ModelHandle`: a loaded model plus what the engine needs to use it safely and correctly.

The wrapped module is put in eval mode and its parameters are frozen (``requires_grad=False``) once,
at load time: explanations only need gradients w.r.t. activations and inputs, never w.r.t. weights,
so no ``.grad`` is ever allocated on the shared model. ``lock`` serialises every pass that registers
hooks or otherwise depends on per-call state, so that concurrent Streamlit sessions sharing one
cached handle never see each other's activations.
"""
from __future__ import annotations

import threading
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn

from ..errors import ParameterError
from ..inputs import as_model_input
from .card import ModelSpec, spec_digest
from .inference import InferenceTwin
from .layers import conv_layer_paths

Prediction = tuple[int, str, float]


class ModelHandle:
    """A loaded model. Build it with :func:`cnnviz_core.load_model`, not directly."""

    def __init__(self, spec: ModelSpec, model: nn.Module, device: torch.device, weights_label: str, *,
                 identity: Optional[str] = None, notes: Sequence[str] = (), hookable: bool = True,
                 max_batch: Optional[int] = None) -> None:
        self.spec = spec
        self.device = device
        self.weights_label = weights_label
        #: What was done to read the file (container key, prefixes stripped, architecture detected).
        self.notes = tuple(notes)
        #: False for TorchScript: its submodules take no hooks, so layer methods cannot run.
        self.hookable = hookable
        #: Largest batch a hooked pass may use (1 for programs exported for batch 1, which run a
        #: batch sample by sample: a hook would see only the last sample); None = any.
        self.max_batch = max_batch
        self.model = model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.lock = threading.RLock()
        # The identity of the weights (a file's sha256 for user files): results cached under this key
        # are never served for another file of the same name.
        #: Which weights with which facts, on any device: a file's sha256 and the spec's digest (the
        #: same file with other labels or preprocessing gives other results).
        self.identity = f"{spec.name}|{identity or weights_label}|{spec_digest(spec)}"
        self.key = f"{self.identity}|{device}"
        self._conv_layers = conv_layer_paths(self.model)
        self._mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
        self._twin = InferenceTwin(self.model, spec.input_size, device, lock=self.lock)
        self._tail_twins: dict[str, InferenceTwin] = {}

    # ---- facts -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names)

    @property
    def num_classes(self) -> int:
        return len(self.spec.class_names)

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def conv_layers(self) -> list[str]:
        """Module paths of all ``nn.Conv2d`` layers, e.g. ``["features.0", ..., "features.28"]``."""
        return list(self._conv_layers)

    @property
    def default_layer(self) -> str:
        return self.spec.default_layer

    @property
    def cam_layers(self) -> list[str]:
        """Layer choices for CAM methods: :attr:`conv_layers`, plus :attr:`default_layer` at the end
        where it is not a convolution (e.g. ``layer4`` of a ResNet, ``fusion`` of shapes-cnn)."""
        convs = self.conv_layers
        return convs + ([self.default_layer] if self.default_layer not in convs else [])

    def layer_names(self) -> list[str]:
        """Every named submodule path (candidates for CAM layers and feature maps)."""
        return [name for name, _ in self.model.named_modules() if name]

    def module(self, path: str) -> nn.Module:
        """The submodule at ``path`` (e.g. ``"layer4"``; ``""`` is the model itself);
        :class:`ParameterError` if there is none."""
        if not path:
            return self.model
        try:
            return self.model.get_submodule(path)
        except AttributeError:
            pass
        except RuntimeError:  # TorchScript: "get_submodule is not supported on ScriptModules"
            found: object = self.model
            for part in path.split("."):
                found = getattr(found, part, None)
            if isinstance(found, nn.Module):
                return found
        hint = ", ".join(self._conv_layers[-3:]) or "(no conv layers)"
        raise ParameterError(
            f"model {self.name!r} has no layer {path!r} (default {self.default_layer!r}; last conv layers: {hint})"
        ) from None

    def class_name(self, index: int) -> str:
        """Name of class ``index``, or ``"class N"`` where the model has no name for it."""
        names = self.spec.class_names
        return names[index] if 0 <= index < len(names) else f"class {index}"

    def class_index(self, target: Union[int, str]) -> int:
        """Validate a target class given as index or class name."""
        if isinstance(target, str) and not target.lstrip("-").isdigit():
            if target not in self.spec.class_names:
                raise ParameterError(f"unknown class {target!r} for model {self.name!r}")
            return self.spec.class_names.index(target)
        index = int(target)
        if not 0 <= index < self.num_classes:
            raise ParameterError(f"target class {index} is out of range 0..{self.num_classes - 1} for {self.name!r}")
        return index

    # ---- images ------------------------------------------------------------------------------
    def crop(self, image: Image.Image) -> Image.Image:
        """Resize the shorter side to ``resize_size`` and centre-crop ``input_size`` (the model's view)."""
        image = TF.resize(image.convert("RGB"), self.spec.resize_size, antialias=True)
        return TF.center_crop(image, [self.spec.input_size, self.spec.input_size])

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> normalized ``(1, 3, S, S)`` float32 tensor on the model's device."""
        x = TF.pil_to_tensor(self.crop(image)).float().div_(255.0).unsqueeze(0).to(self.device)
        return (x - self._mean) / self._std

    def to_display(self, x: torch.Tensor) -> np.ndarray:
        """Undo the normalization: ``(1|N, 3, H, W)`` tensor -> ``(H, W, 3)`` uint8 of the first image."""
        rgb = (x[:1].detach().to(self.device) * self._std + self._mean).clamp(0, 1)
        return (rgb[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)

    def normalize(self, rgb01: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` RGB in [0, 1] -> normalized model input (differentiable)."""
        return (rgb01 - self._mean) / self._std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized model input -> RGB in [0, 1] (differentiable, not clamped)."""
        return x * self._std + self._mean

    def _as_input(self, x: Union[torch.Tensor, Image.Image]) -> torch.Tensor:
        return as_model_input(self, x, batch=True)

    # ---- inference ---------------------------------------------------------------------------
    def forward(self, x: Union[torch.Tensor, Image.Image]) -> torch.Tensor:
        """Logits ``(N, num_classes)`` without gradients, under the model lock."""
        x = self._as_input(x)
        with self.lock, torch.inference_mode():
            return self.model(x)

    def batch_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` of a batch of many perturbed inputs (Score-CAM, occlusion,
        deletion/insertion), without gradients and hooks: runs the inference twin of :mod:`.inference`
        (BatchNorm folded, frozen where faster; same values up to rounding), outside the model lock
        unless the twin is the model itself."""
        return self._twin(x)  # takes the lock itself when it runs the model (see InferenceTwin)

    def batch_tail_logits(self, layer: str, tail: torch.nn.Module, activations: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` of ``tail`` (the part of the model after ``layer``, see
        :func:`cnnviz_core.attribution.tail.layer_tail`) on a batch of replaced ``activations``, without
        gradients, under the model lock: runs the tail's own inference twin (BatchNorm folded, and
        frozen where faster, built once per layer from the first batch and checked against ``tail``)."""
        with self.lock:
            twin = self._tail_twins.get(layer)
            if twin is None:
                twin = self._tail_twins[layer] = InferenceTwin(tail, self.spec.input_size, self.device,
                                                               probe=activations[:2].detach().clone(), lock=self.lock)
        return twin(activations)

    def nbytes(self) -> int:
        """Bytes of the model's tensors plus its inference twin's (once built), storage counted once."""
        seen: dict[int, int] = {}
        twins = [self._twin, *self._tail_twins.values()]
        modules = [self.model] + [t.built for t in twins if t.built is not None]
        for module in modules:
            for t in list(module.parameters()) + list(module.buffers()):
                if t.device.type != "meta":
                    storage = t.untyped_storage()
                    seen[storage.data_ptr()] = storage.nbytes()
        return sum(seen.values()) + sum(t.frozen_nbytes for t in twins)

    def in_use(self) -> bool:
        """Whether another thread holds this model's lock (a pass is running on it)."""
        if self.lock.acquire(blocking=False):
            self.lock.release()
            return False
        return True

    @property
    def batch_forward_mode(self) -> str:
        """How :meth:`batch_logits` runs: ``bn-folded`` or why the model itself is used."""
        return self._twin.how

    @property
    def batch_forward_engine(self) -> str:
        """``frozen`` (an optimized TorchScript trace of the twin) or ``eager`` with the reason."""
        return self._twin.engine

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax over classes, or per-class sigmoid for multi-label heads (our shapes models)."""
        return torch.sigmoid(logits) if self.spec.head == "multilabel" else torch.softmax(logits, dim=1)

    def predict(self, x: Union[torch.Tensor, Image.Image], topk: int = 5) -> list[Prediction]:
        """Top-``topk`` ``(class_index, class_name, probability)`` for the first image of ``x``."""
        if topk < 1:
            raise ParameterError(f"topk must be >= 1, got {topk}")
        probs = self.probabilities(self.forward(x).float())[0]
        values, indices = probs.topk(min(topk, probs.numel()))
        return [(int(i), self.class_name(int(i)), float(v))
                for v, i in zip(values.cpu(), indices.cpu())]

    def __repr__(self) -> str:
        return f"ModelHandle({self.name!r}, weights={self.weights_label!r}, device={self.device})"
