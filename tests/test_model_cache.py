"""The engine's model cache is bounded by bytes (twins included) and never evicts a model in use."""
from __future__ import annotations


import pytest
import torch

from cnnviz_core import Engine, load_model
from cnnviz_core.errors import ParameterError
from cnnviz_core.model_cache import ModelCache, budget_from_env
from lock_helpers import held_by_another_thread


def _bytes(handle) -> int:
    return sum(t.numel() * t.element_size() for t in list(handle.model.parameters()) + list(handle.model.buffers()))


def test_nbytes_counts_tensors_and_the_twin_once_built():
    handle = load_model("resnet18", weights=None)
    plain = handle.nbytes()
    assert plain == _bytes(handle)
    handle.batch_logits(torch.randn(2, 3, 64, 64))  # builds the BatchNorm-folded copy
    assert handle.batch_forward_mode == "bn-folded"
    assert plain < handle.nbytes() < 2.1 * plain


def test_least_recently_used_models_are_evicted_to_the_budget():
    a, b, c = (load_model(n, weights=None) for n in ("shapes-cnn", "squeezenet1_1", "resnet18"))
    cache = ModelCache(budget_bytes=a.nbytes() + b.nbytes() + 1)
    cache.put("a", a)
    cache.put("b", b)
    assert cache.keys() == ["a", "b"] and cache.evicted == 0
    cache.get("a")  # a is now the most recently used
    cache.put("c", c)  # resnet18 alone is over the budget: it stays (the caller needs it), a and b go
    assert cache.keys() == ["c"] and cache.evicted == 2
    assert cache.total_bytes() == c.nbytes()


def test_a_model_held_by_a_running_call_is_not_evicted():
    a, b = load_model("squeezenet1_1", weights=None), load_model("shapes-cnn", weights=None)
    cache = ModelCache(budget_bytes=max(a.nbytes(), b.nbytes()) + 1)
    cache.put("a", a)
    with held_by_another_thread(a.lock):  # a pass is running on a
        cache.put("b", b)
        assert set(cache.keys()) == {"a", "b"}  # over budget, but a is in use
    cache.trim()
    assert cache.keys() == ["b"]


def test_engine_reports_memory_and_reads_the_budget(monkeypatch):
    monkeypatch.setenv("CNNVIZ_MODEL_CACHE_MB", "0.5")
    engine = Engine(device="cpu")
    engine.model("shapes-cnn", None)
    engine.model("zfnet", None)
    mem = engine.memory()
    assert mem["budget_mb"] == 0.5 and len(mem["models"]) == 1 and "zfnet" in mem["models"][0][0]
    assert mem["total_mb"] > 0.5 and mem["evicted"] == 1
    for bad in ("-1", "lots"):
        monkeypatch.setenv("CNNVIZ_MODEL_CACHE_MB", bad)
        with pytest.raises(ParameterError, match="CNNVIZ_MODEL_CACHE_MB"):
            budget_from_env()
