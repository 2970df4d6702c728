"""Read the model files people actually have, safely.

* state_dicts and training checkpoints (``.pt``/``.pth``/``.bin``/``.ckpt``) through
  ``torch.load(weights_only=True)``, or ``.safetensors``: nothing but tensors and plain containers
  is ever unpickled, so a file that needs Python code (``torch.save(model)``, a crafted pickle) is
  refused and its payload never runs;
* checkpoint containers are unwrapped (``state_dict``, ``model_state_dict``, ``model``, ``net``,
  ``ema``, ``model_ema``) and the usual prefixes stripped (``module.``, ``model.``, ``_orig_mod.``);
* programs: ``torch.export`` archives (``.pt2``) and TorchScript.

The architecture of a bare state_dict is found by its key-shape signature among the torchvision
builders and ours, ignoring the head's size (:func:`detect_architecture`); the signatures are
computed once, lazily, and cached on disk per torch/torchvision version.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import threading
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
import torchvision
from torch import nn

from ..errors import ModelError, ParameterError, one_line
from .architectures import Architecture, head_dims, state_shapes
from .programs import check_export_archive

#: Containers of training checkpoints, in the order they are looked for.
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "ema", "model_ema", "state_dict_ema")
#: Prefixes that wrappers put before every key (DataParallel/DDP, Lightning, torch.compile).
KEY_PREFIXES = ("module.", "model.", "_orig_mod.")
PROGRAM_SUFFIXES = (".pt2", ".ts", ".torchscript")
STATE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
MODEL_SUFFIXES = PROGRAM_SUFFIXES + STATE_SUFFIXES
MAX_LABELS_BYTES = 2 * 2**20


# ---- options that come with a model ----------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class UserModelOptions:
    """What goes with a model file (CLI flags, ``<file>.json`` sidecar or the app); ``None`` = not given.

    ``mean``/``std`` are per RGB channel of the ``[0, 1]`` image; ``input_size`` is the square
    crop in pixels; ``resize_size`` the shorter side before cropping."""

    arch: Optional[str] = None
    labels: Optional[tuple[str, ...]] = None
    input_size: Optional[int] = None
    resize_size: Optional[int] = None
    mean: Optional[tuple[float, float, float]] = None
    std: Optional[tuple[float, float, float]] = None
    default_layer: Optional[str] = None

    def over(self, base: "UserModelOptions") -> "UserModelOptions":
        """These options, with ``base``'s where these are not given."""
        return UserModelOptions(**{k: getattr(self, k) if getattr(self, k) is not None else getattr(base, k)
                                   for k in self.__dataclass_fields__})

    def validated(self) -> "UserModelOptions":
        if self.input_size is not None and not 8 <= self.input_size <= 1024:
            raise ParameterError(f"input size must be 8..1024 px, got {self.input_size}")
        if self.resize_size is not None and not 8 <= self.resize_size <= 2048:
            raise ParameterError(f"resize size must be 8..2048 px, got {self.resize_size}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and (len(value) != 3 or not all(isinstance(v, (int, float)) for v in value)):
                raise ParameterError(f"{name} must be three numbers R,G,B, got {value!r}")
        if self.std is not None and any(v <= 0 for v in self.std):
            raise ParameterError(f"std must be positive, got {self.std}")
        return self


def sidecar_options(path: Path) -> UserModelOptions:
    """Options from ``<file>.json`` beside a model file (absent: none). Keys: ``arch``, ``classes``
    (or ``labels``: a list, or the name of a labels file beside it), ``input_size``, ``resize_size``,
    ``mean``, ``std``, ``default_layer``."""
    sidecar = path.with_name(path.name + ".json")
    if not sidecar.is_file():
        return UserModelOptions()
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{sidecar.name}: not valid JSON ({one_line(str(exc), 80)})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{sidecar.name}: expected a JSON object")
    return options_from_mapping(meta, where=sidecar.name, folder=path.parent)


def options_from_mapping(meta: dict, *, where: str, folder: Optional[Path] = None) -> UserModelOptions:
    labels = meta.get("classes", meta.get("labels"))
    if isinstance(labels, str) and folder is not None:
        labels = read_labels((folder / labels).read_bytes(), labels)
    elif labels is not None:
        labels = _labels_from_list(labels, where)

    def triple(key: str) -> Optional[tuple[float, float, float]]:
        value = meta.get(key)
        return None if value is None else tuple(float(v) for v in value)  # type: ignore[return-value]

    try:
        return UserModelOptions(
            arch=meta.get("arch"), labels=labels,
            input_size=int(meta["input_size"]) if meta.get("input_size") is not None else None,
            resize_size=int(meta["resize_size"]) if meta.get("resize_size") is not None else None,
            mean=triple("mean"), std=triple("std"), default_layer=meta.get("default_layer"),
        ).validated()
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ParameterError):
            raise ParameterError(f"{where}: {exc}") from None
        raise ModelError(f"{where}: a value has the wrong type ({one_line(str(exc), 80)})") from None


def _labels_from_list(values: Any, where: str) -> tuple[str, ...]:
    if not isinstance(values, list) or not values or not all(isinstance(v, (str, int)) for v in values):
        raise ModelError(f"{where}: labels must be a non-empty list of names")
    return tuple(one_line(str(v), 120) for v in values)


def read_labels(data: bytes, name: str = "labels") -> tuple[str, ...]:
    """Class names from a labels file: a JSON list, or one name a line (blank lines skipped)."""
    if len(data) > MAX_LABELS_BYTES:
        raise ModelError(f"{name}: labels file is {len(data) / 2**20:.1f} MB, the limit is 2 MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ModelError(f"{name}: labels file is not UTF-8 text") from None
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            return _labels_from_list(json.loads(stripped), name)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{name}: not a valid JSON list ({one_line(str(exc), 80)})") from None
    names = tuple(one_line(line, 120) for line in text.splitlines() if line.strip())
    if not names:
        raise ModelError(f"{name}: labels file has no names")
    return names


# ---- state_dicts and checkpoints -------------------------------------------------------------
@dataclass(frozen=True)
class StateDictRead:
    state: dict[str, torch.Tensor]
    notes: tuple[str, ...] = ()  # which container key and prefixes were used


def _is_state(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values()) \
        and all(isinstance(k, str) for k in obj)


def unwrap_checkpoint(obj: Any, name: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The state_dict inside a checkpoint container, and notes on which key was used."""
    notes: list[str] = []
    for _ in range(3):  # e.g. {"ema": {"module": {...}}} after prefix-free nesting
        if _is_state(obj):
            return obj, notes
        if not isinstance(obj, dict):
            break
        key = next((k for k in CHECKPOINT_KEYS if isinstance(obj.get(k), dict)), None)
        if key is None:
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if tensors and len(tensors) == len(obj):
                break
            seen = ", ".join(sorted(str(k) for k in obj)[:8])
            raise ModelError(f"{name}: a checkpoint without model weights (keys: {seen}); expected a state_dict "
                             f"or one of {', '.join(CHECKPOINT_KEYS)}")
        notes.append(f"weights from checkpoint key {key!r}")
        obj = obj[key]
    if isinstance(obj, dict) and obj and all(isinstance(k, str) for k in obj):
        dropped = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
        state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if state and len(dropped) <= 2:  # e.g. a stray "epoch" mixed in
            notes.append(f"ignored non-tensor entries: {', '.join(dropped)}")
            return state, notes
    raise ModelError(f"{name}: expected a state_dict (name -> tensor), got {type(obj).__name__}")


def strip_prefixes(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove :data:`KEY_PREFIXES` that every key carries (repeatedly, e.g. ``module.model.``)."""
    stripped: list[str] = []
    changed = True
    while changed:
        changed = False
        for prefix in KEY_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped.append(prefix)
                changed = True
    return state, ([f"stripped key prefix {''.join(stripped)!r}"] if stripped else [])


def read_state_dict(path: Path) -> StateDictRead:
    """A state_dict from ``.safetensors`` or a ``torch.save`` file, refusing anything that needs code."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{path.name}: not a valid safetensors file ({one_line(str(exc), 100)})") from None
    else:
        obj = _torch_load(path)
    state, notes = unwrap_checkpoint(obj, path.name)
    state, prefix_notes = strip_prefixes(state)
    return StateDictRead(state, tuple(notes + prefix_notes))


_GLOBAL = re.compile(r"GLOBAL ([A-Za-z_][A-Za-z0-9_.]{0,100})")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No warnings and no log records from torch while a file is read: whatever goes wrong becomes
    one :class:`ModelError` line (``torch.export.load`` logs whole tracebacks, ``torch.jit.load``
    and the weights-only unpickler warn on stderr)."""
    loggers = [logging.getLogger(n) for n in ("torch.export", "torch._export", "torch._export.serde.serialize",
                                              "torch.export.pt2_archive._package")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.CRITICAL + 1)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _torch_load(path: Path) -> Any:
    try:
        with _quiet():
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError...
        text = str(exc)
        needs_code = "Unsupported global" in text or "GLOBAL" in text or "REDUCE" in text or "BUILD" in text
        if needs_code:
            found = _GLOBAL.search(text)
            what = f" (it references {found.group(1)})" if found else ""
            raise ModelError(
                f"{path.name}: refused - this file needs unpickling of Python code{what}: a whole model saved with "
                "torch.save(model), a checkpoint holding Python objects, or a crafted pickle; cnnviz never runs "
                "such code. Save torch.save(model.state_dict(), PATH) or export a .pt2 with torch.export"
            ) from None
        _, _, unpickler = text.partition("WeightsUnpickler error:")  # torch's own reason, without its advice
        reason = (unpickler.strip() or text.strip()).splitlines()[0] if text.strip() else type(exc).__name__
        raise ModelError(f"{path.name}: refused - corrupt, or not a PyTorch state_dict, checkpoint or program "
                         f"({one_line(reason, 100)})") from None


# ---- finding the architecture ----------------------------------------------------------------
def _digest(items: Sequence[Any]) -> str:
    return hashlib.sha1(json.dumps(items).encode()).hexdigest()


def _masked(shapes: dict[str, tuple[int, ...]], heads: dict[str, int]) -> list:
    return sorted([k, [-1 if heads.get(k) == i else d for i, d in enumerate(s)]] for k, s in shapes.items())


def _signature(arch: Architecture) -> dict[str, Any]:
    shapes, heads = state_shapes(arch.build_empty()), head_dims(arch)
    return {"keys": _digest(sorted(shapes)), "shapes": _digest(_masked(shapes, heads)), "head": heads}


def _cache_dir() -> Path:
    base = os.environ.get("CNNVIZ_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cnnviz")
    return Path(base)


class SignatureIndex:
    """Key-shape signatures of every detectable architecture, built once, lazily, and kept on disk
    (``$CNNVIZ_CACHE_DIR``, default ``~/.cache/cnnviz``) for this torch/torchvision version."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._signatures: Optional[dict[str, dict[str, Any]]] = None

    @staticmethod
    def names() -> list[str]:
        from .catalog import entries, torchvision_names

        ours = [e.name for e in entries() if e.architecture.origin in ("cnnviz", "paper")]
        return ours + torchvision_names()

    def _file(self) -> Path:
        return _cache_dir() / f"signatures-torch{torch.__version__}-tv{torchvision.__version__}.json"

    def signatures(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if self._signatures is None:
                self._signatures = self._read_or_build()
            return self._signatures

    def _read_or_build(self) -> dict[str, dict[str, Any]]:
        names = self.names()
        try:
            cached = json.loads(self._file().read_text())
            if sorted(cached) == sorted(names):
                return cached
        except (OSError, ValueError):
            pass
        from .catalog import get_architecture, torchvision_architecture_stub, torchvision_names

        tv = set(torchvision_names())
        built = {name: _signature(torchvision_architecture_stub(name) if name in tv else get_architecture(name))
                 for name in names}
        try:
            self._file().parent.mkdir(parents=True, exist_ok=True)
            tmp = self._file().with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(built))
            tmp.replace(self._file())
        except OSError:
            pass  # a read-only home still detects; it just rebuilds next process
        return built

    def matches(self, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
        """(architectures whose names and shapes fit ``state`` up to the head size, those whose key
        names fit but some shape does not)."""
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        keys = _digest(sorted(shapes))
        exact, names_only = [], []
        for name, sig in self.signatures().items():
            if sig["keys"] != keys:
                continue
            heads = sig["head"]
            sizes = {shapes[k][d] for k, d in heads.items() if k in shapes and len(shapes[k]) > d}
            if _digest(_masked(shapes, heads)) == sig["shapes"] and len(sizes) <= 1:
                exact.append(name)
            else:
                names_only.append(name)
        return exact, names_only


INDEX = SignatureIndex()


def detect_architecture(state: dict[str, torch.Tensor], name: str) -> str:
    """The one architecture whose parameter names and shapes equal ``state``'s, ignoring the head's
    size; :class:`ModelError` (one line, listing what was tried) on no match or ambiguity."""
    exact, names_only = INDEX.matches(state)
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        raise ModelError(f"{name}: fits several architectures ({', '.join(exact)}); name one with --arch "
                         "or a sidecar {\"arch\": NAME}")
    if names_only:
        from .catalog import get_architecture
        from .sources import assign_state

        assign_state(get_architecture(names_only[0]), state, strict_head=False)  # raises with the first bad key
    tried = INDEX.names()
    raise ModelError(
        f"{name}: a state_dict of {len(state)} tensors that fits none of the {len(tried)} architectures tried by "
        "parameter names and shapes; for a timm model or your own class give --arch timm:NAME / NAME, or export "
        f"the model with torch.export (.pt2); tried: {', '.join(tried)}"  # the hint first: a terminal cuts the list
    )


# ---- programs --------------------------------------------------------------------------------
def is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names)


def is_program(path: Path) -> bool:
    return path.suffix.lower() in PROGRAM_SUFFIXES or is_torchscript(path)


@dataclass(frozen=True)
class ProgramRead:
    module: nn.Module
    kind: str  # "torch.export program" | "TorchScript"
    fixed_size: Optional[int] = None  # square input size the program was exported for, if static
    fixed_batch: Optional[int] = None
    hookable: bool = True


def _batch_one(module: nn.Module) -> nn.Module:
    """Give ``module`` (an unflattened program fixed to batch 1) a forward that loops over a batch,
    keeping its submodule paths (``conv1``, not ``program.conv1``) for hooks and layer choices."""
    program_forward = module.forward

    class BatchLooped(type(module)):  # type: ignore[misc, valid-type]
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            return torch.cat([program_forward(x[i:i + 1]) for i in range(x.shape[0])])

    BatchLooped.__name__ = f"BatchLooped{type(module).__name__}"
    module.__class__ = BatchLooped
    return module


def read_program(path: Path) -> ProgramRead:
    """A ``torch.export`` archive (unflattened, so its layers can be hooked) or a TorchScript module."""
    try:
        if path.suffix.lower() == ".pt2":
            data = path.read_bytes()  # checked and loaded from the same bytes
            check_export_archive(data, path.name)
            with _quiet():
                program = torch.export.load(io.BytesIO(data))
            placeholders = [n for n in program.graph.nodes
                            if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
            if len(placeholders) != 1:
                raise ModelError(f"{path.name}: the program takes {len(placeholders)} inputs; cnnviz needs one image batch")
            shape = tuple(placeholders[0].meta["val"].shape)
            if len(shape) != 4:
                raise ModelError(f"{path.name}: the program's input has {len(shape)} dims; expected (N, 3, H, W)")
            static = [d if isinstance(d, int) else None for d in shape]
            if static[2] is not None and static[3] is not None and static[2] != static[3]:
                raise ModelError(f"{path.name}: exported for {static[2]}x{static[3]} inputs; cnnviz needs square inputs")
            module = torch.export.unflatten(program)
            if static[0] == 1:
                module = _batch_one(module)
            return ProgramRead(module, "torch.export program", static[2], static[0])
        with _quiet():
            script = torch.jit.load(str(path), map_location="cpu")
        return ProgramRead(script, "TorchScript", hookable=False)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        text = str(exc).strip()
        reason = one_line(text.splitlines()[0] if text else type(exc).__name__, 140)
        raise ModelError(f"{path.name}: could not load as a program ({reason})") from None


def file_digest(path: Path) -> str:
    """sha256 of a file (its identity in caches and reports)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


__all__ = [
    "MODEL_SUFFIXES", "ProgramRead", "StateDictRead", "UserModelOptions", "detect_architecture", "file_digest",
    "is_program", "options_from_mapping", "read_labels", "read_program", "read_state_dict", "sidecar_options",
    "strip_prefixes", "unwrap_checkpoint",
]
