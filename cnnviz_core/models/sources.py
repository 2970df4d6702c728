"""Weights sources: where an architecture's tensors come from, separate from the architecture.

Every source answers three questions without loading anything heavy: :meth:`~WeightsSource.readiness`
(can it be used right now?), :meth:`~WeightsSource.where` (where its file lives or must be put) and
:meth:`~WeightsSource.load` (the module, with its weights). The sources are:

* :class:`Bundled` - a state_dict committed with cnnviz (our trained models);
* :class:`ImageNetCache` - torchvision's published weights through its own cache (``$TORCH_HOME``);
* :class:`StateDictFile` - a user's state_dict or checkpoint, with a head of any size;
* :class:`RandomInit` - seeded random initialisation (the mechanics, not the meaning).

Nothing is unpickled beyond tensors and plain containers (``torch.load(weights_only=True)`` or
safetensors).
"""
from __future__ import annotations

import abc
import hashlib
import os
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import torch
from torch import nn

from ..errors import ModelError, WeightsUnavailableError
from .architectures import Architecture, head_dims, state_shapes

ProgressFn = Callable[[float, str], None]
Status = Literal["ready", "needs download", "untrained", "unavailable"]
RANDOM_SEED = 0
_HASH_RE = re.compile(r"-([a-f0-9]+)\.")


@dataclass(frozen=True)
class Readiness:
    """``status``: ready (usable now), needs download, untrained (random init by design) or
    unavailable; ``detail``: one line for the user."""

    status: Status
    detail: str
    download_mb: float = 0.0

    @property
    def usable(self) -> bool:
        return self.status in ("ready", "untrained")


@dataclass(frozen=True)
class Loaded:
    """A module with its weights; ``label`` says which weights (shown beside the model)."""

    model: nn.Module
    label: str
    class_names: Optional[tuple[str, ...]] = None  # set when the head was resized
    notes: tuple[str, ...] = ()


class WeightsSource(abc.ABC):
    """Where the weights of an architecture come from."""

    #: Short stable key, part of a loaded model's cache key.
    key: str

    @abc.abstractmethod
    def readiness(self) -> Readiness: ...

    @abc.abstractmethod
    def where(self) -> str:
        """Where the file is, or must be placed (one line)."""

    @abc.abstractmethod
    def load(self, arch: Architecture, *, progress: Optional[ProgressFn] = None,
             allow_download: Optional[bool] = None) -> Loaded: ...


class RandomInit(WeightsSource):
    """Random initialisation with a fixed seed (reproducible across processes)."""

    def __init__(self, seed: int = RANDOM_SEED, *, untrained: bool = False) -> None:
        self.seed, self.untrained = seed, untrained
        self.key = f"random:{seed}"

    def readiness(self) -> Readiness:
        return Readiness("untrained", "no published weights: random initialisation unless you load a state_dict")

    def where(self) -> str:
        return "no file: random initialisation"

    def load(self, arch: Architecture, *, progress: Optional[ProgressFn] = None,
             allow_download: Optional[bool] = None) -> Loaded:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = arch.finished(arch.build())
        prefix = "untrained: " if self.untrained else ""
        return Loaded(model, f"{prefix}random init (seed {self.seed})")


class Bundled(WeightsSource):
    """A state_dict committed with cnnviz, loaded strictly."""

    key = "bundled"

    def __init__(self, path: Path) -> None:
        self.path = path

    def readiness(self) -> Readiness:
        if self.path.is_file():
            return Readiness("ready", "bundled weights, no download")
        return Readiness("unavailable", f"bundled weights missing: {self.path}")

    def where(self) -> str:
        return str(self.path)

    def load(self, arch: Architecture, *, progress: Optional[ProgressFn] = None,
             allow_download: Optional[bool] = None) -> Loaded:
        from .userfiles import read_state_dict

        return Loaded(assign_state(arch, read_state_dict(self.path).state, strict_head=True), "bundled")


def hub_checkpoint_path(url: str) -> Path:
    """Where torch.hub / torchvision cache a checkpoint: ``$TORCH_HOME/hub/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


class ImageNetCache(WeightsSource):
    """torchvision's published ImageNet weights (a ``WeightsEnum`` member), read from its cache."""

    key = "imagenet"

    def __init__(self, weights: Any) -> None:
        self.weights = weights

    @property
    def file_mb(self) -> float:
        return float(self.weights.meta.get("_file_size") or 0.0)

    @property
    def path(self) -> Path:
        return hub_checkpoint_path(self.weights.url)

    def readiness(self) -> Readiness:
        if self.path.is_file():
            return Readiness("ready", f"ImageNet weights in cache ({self.path})")
        return Readiness("needs download", f"ImageNet weights ({self.file_mb:.0f} MB) not in cache: {self.path}",
                         self.file_mb)

    def where(self) -> str:
        return f"place {self.path.name} in {self.path.parent} (or set TORCH_HOME), downloaded from {self.weights.url}"

    def load(self, arch: Architecture, *, progress: Optional[ProgressFn] = None,
             allow_download: Optional[bool] = None) -> Loaded:
        path = self.ensure(progress=progress, allow_download=allow_download)
        state = self.weights.get_state_dict(progress=False, weights_only=True, map_location="cpu")
        return Loaded(assign_state(arch, state, strict_head=True), f"ImageNet ({path.name})")

    def ensure(self, *, progress: Optional[ProgressFn] = None, allow_download: Optional[bool] = None) -> Path:
        """The checkpoint's path in the cache, downloading it if allowed (``$CNNVIZ_OFFLINE`` unset)."""
        path = self.path
        if path.is_file():
            return path
        if allow_download is None:
            allow_download = not os.environ.get("CNNVIZ_OFFLINE")
        name = str(self.weights).split(".")[0].replace("_Weights", "").lower()
        if not allow_download:
            raise WeightsUnavailableError(f"{name} ImageNet weights are not in the cache; offline mode: {self.where()}")
        try:
            download_file(self.weights.url, path, progress=progress)
        except OSError as exc:
            raise WeightsUnavailableError(
                f"{name} ImageNet weights ({self.file_mb:.0f} MB) could not be downloaded "
                f"({type(exc).__name__}: {str(exc)[:80]}); {self.where()}"
            ) from None
        return path


class StateDictFile(WeightsSource):
    """A user's state_dict or training checkpoint for a known architecture; the head may have any
    number of classes (read from the file)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.key = f"file:{self.path}"

    def readiness(self) -> Readiness:
        if self.path.is_file():
            return Readiness("ready", f"your file {self.path.name}")
        return Readiness("unavailable", f"file not found: {self.path}")

    def where(self) -> str:
        return str(self.path)

    def load(self, arch: Architecture, *, progress: Optional[ProgressFn] = None,
             allow_download: Optional[bool] = None) -> Loaded:
        from .userfiles import read_state_dict

        read = read_state_dict(self.path)
        model = assign_state(arch, read.state, strict_head=False)
        n = _num_classes(arch, read.state)
        names = None if n == arch.num_classes else tuple(f"class {i}" for i in range(n))
        return Loaded(model, f"file {self.path.name}", names, read.notes)


def _num_classes(arch: Architecture, state: dict[str, torch.Tensor]) -> int:
    for key, dim in head_dims(arch).items():
        if key in state and state[key].ndim > dim:
            return int(state[key].shape[dim])
    return arch.num_classes


def assign_state(arch: Architecture, state: dict[str, torch.Tensor], *, strict_head: bool) -> nn.Module:
    """Build ``arch`` empty with the head size found in ``state`` and assign ``state`` strictly.

    Any mismatch is one line naming the first offending key and both shapes. ``strict_head``:
    the head must have the architecture's own number of classes."""
    n = arch.num_classes if strict_head else _num_classes(arch, state)
    model = arch.build_empty(n)
    want = state_shapes(model)
    have = {k: tuple(v.shape) for k, v in state.items()}
    for key, shape in want.items():
        if key not in have:
            raise ModelError(f"weights do not fit {arch.name!r}: missing {key} (expected shape {list(shape)})")
        if have[key] != shape:
            raise ModelError(f"weights do not fit {arch.name!r}: {key} has shape {list(have[key])}, "
                             f"the architecture expects {list(shape)}")
    extra = [k for k in have if k not in want]
    if extra:
        raise ModelError(f"weights do not fit {arch.name!r}: unexpected key {extra[0]} (shape {list(have[extra[0]])})"
                         + (f" and {len(extra) - 1} more" if len(extra) > 1 else ""))
    model.load_state_dict(state, strict=True, assign=True)
    if any(t.is_meta for t in model.buffers()):  # non-persistent buffers are not in a state_dict
        model = arch.build(n)
        model.load_state_dict(state, strict=True)
    return arch.finished(model)


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
