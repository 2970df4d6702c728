"""The per-process engine: loaded models shared by every caller (every Streamlit session).

The app creates one :class:`Engine` through ``st.cache_resource``; the CLI and tests create their own.
Loading is serialised per model key, so concurrent first requests build a model once.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional, Union

import torch

from .cache import LRUCache
from .model_cache import ModelCache
from .device import resolve_device
from .models import ModelHandle, UserModelOptions, load_model
from .models.loading import WeightsArg
from .models.sources import ProgressFn


class Engine:
    """Holds loaded models within a memory budget (least recently used evicted, see
    :class:`~.model_cache.ModelCache`) and the results cache shared by every session."""

    def __init__(self, budget_bytes: Optional[int] = None, device: Union[str, torch.device, None] = "auto") -> None:
        self.device = resolve_device(device)
        self._models = ModelCache(budget_bytes)
        self._load_locks: dict[tuple, threading.Lock] = {}
        self._guard = threading.Lock()
        #: Results shared across sessions (explanations, metrics), keyed by model key + input digest.
        self.results = LRUCache(256)

    def model(
        self,
        name_or_path: Union[str, Path],
        weights: WeightsArg = "default",
        device: Union[str, torch.device, None] = None,
        *,
        options: Optional[UserModelOptions] = None,
        progress: Optional[ProgressFn] = None,
        allow_download: Optional[bool] = None,
    ) -> ModelHandle:
        """The loaded model for ``(name, weights, device, options)``, loading it on first use.

        For models every session may share (catalog names, files under the model roots). A model a
        visitor uploads belongs to that visitor's session and is never put here."""
        dev = resolve_device(device) if device is not None else self.device
        key = (str(name_or_path), None if weights is None else str(weights), str(dev), options)
        handle = self._models.get(key)
        if handle is not None:
            return handle
        with self._guard:
            lock = self._load_locks.setdefault(key, threading.Lock())
        with lock:
            handle = self._models.get(key)
            if handle is None:
                handle = load_model(name_or_path, weights, dev, options=options, progress=progress,
                                    allow_download=allow_download)
                self._models.put(key, handle)
        return handle

    def loaded(self) -> list[str]:
        """Keys of the cached models, least recently used first."""
        return [str(k) for k in self._models.keys()]

    def memory(self) -> dict:
        """What the model cache holds: ``models`` [(model key, MB)], ``total_mb``, ``budget_mb``,
        ``evicted`` (count since start). Uploaded models live in their sessions, not here."""
        self._models.trim()
        usage = [(key, size / 2**20) for key, size in self._models.usage()]
        return {"models": usage, "total_mb": sum(mb for _, mb in usage),
                "budget_mb": self._models.budget_bytes / 2**20, "evicted": self._models.evicted}
