"""A cache of loaded models bounded by bytes, not by count.

Four VGG-class models with their BatchNorm-folded twins take several GB: counting models bounds
nothing. :class:`ModelCache` weighs each :class:`~cnnviz_core.models.ModelHandle` (its tensors plus
its inference twin once built, shared storage counted once), keeps the total under a budget
(``CNNVIZ_MODEL_CACHE_MB``, default 4096 MB) by evicting the least recently used models, and never
evicts a model that a running call holds (its lock is taken). The model just put is kept even when
it alone is over the budget: the caller needs it (so the peak is at most the budget plus one model).
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Hashable, Optional

from .errors import ParameterError
from .models import ModelHandle

BUDGET_ENV = "CNNVIZ_MODEL_CACHE_MB"
DEFAULT_BUDGET_MB = 4096


def budget_from_env() -> int:
    """The budget in bytes from ``$CNNVIZ_MODEL_CACHE_MB`` (a positive number of MB)."""
    text = os.environ.get(BUDGET_ENV, "").strip()
    if not text:
        return DEFAULT_BUDGET_MB * 2**20
    try:
        mb = float(text)
    except ValueError:
        raise ParameterError(f"{BUDGET_ENV} must be a number of MB, got {text!r}") from None
    if mb <= 0:
        raise ParameterError(f"{BUDGET_ENV} must be positive, got {text!r}")
    return int(mb * 2**20)


class ModelCache:
    """``key -> ModelHandle``, least recently used first, bounded by ``budget_bytes``."""

    def __init__(self, budget_bytes: Optional[int] = None) -> None:
        self.budget_bytes = budget_from_env() if budget_bytes is None else int(budget_bytes)
        self._data: "OrderedDict[Hashable, ModelHandle]" = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    def get(self, key: Hashable) -> Optional[ModelHandle]:
        with self._lock:
            handle = self._data.get(key)
            if handle is not None:
                self._data.move_to_end(key)
            return handle

    def put(self, key: Hashable, handle: ModelHandle) -> None:
        with self._lock:
            self._data[key] = handle
            self._data.move_to_end(key)
            self._trim()

    def trim(self) -> None:
        """Evict down to the budget again (a model's twin may have been built since it was put)."""
        with self._lock:
            self._trim()

    def _trim(self) -> None:
        sizes = {k: h.nbytes() for k, h in self._data.items()}
        total = sum(sizes.values())
        for key in list(self._data)[:-1]:  # the most recently used stays: its caller needs it
            if total <= self.budget_bytes:
                break
            if self._data[key].in_use():
                continue
            del self._data[key]
            total -= sizes[key]
            self.evicted += 1

    def usage(self) -> list[tuple[str, int]]:
        """``(model key, bytes)`` of every cached model, least recently used first."""
        with self._lock:
            return [(h.key, h.nbytes()) for h in self._data.values()]

    def total_bytes(self) -> int:
        return sum(size for _, size in self.usage())

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._data)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)
