"""Run an audit: Ray Data when available (local instance or ``ray_address``), plain in-process
batches otherwise (``use_ray=False`` or Ray not installed). Ray is imported lazily.

On Ray the pipeline is ``from_items(pending) -> map_batches(AuditWorker, concurrency=K)``: each of
the K actors loads the model once and audits whole batches; actors get a GPU (or a share of one)
when the cluster has GPUs, CPUs otherwise, and are restarted (their batch retried) if they die.
The driver consumes finished batches as they stream out and writes each as a Parquet part
(:class:`.results.ResultsFolder`), so a killed run keeps every finished batch and a rerun only does
what is missing. Progress: a tqdm bar on stderr (Ray Data's own bars are switched off).
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ..attribution import resolve_methods
from ..errors import ParameterError
from ..models import is_model_file
from .faithfulness import check_metrics
from .results import ResultsFolder
from .sources import AuditItem
from .worker import TARGET_MODES, AuditConfig, AuditWorker

#: Local Ray instance defaults (a small, polite footprint on a shared machine).
LOCAL_RAY = dict(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False)
ENV_PREFIX = "CNNVIZ_"


@dataclass
class AuditSummary:
    """What a run did. ``images``: listed; ``skipped``: already in the results folder;
    ``processed``: audited now; ``rows_ok`` / ``rows_failed``: rows written now."""

    out: str
    backend: str
    workers: int
    images: int
    skipped: int
    processed: int = 0
    rows_ok: int = 0
    rows_failed: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


def ray_available() -> bool:
    """Whether ``import ray`` works here (Ray is optional: without it the audit runs in-process)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def run_audit(items: Sequence[AuditItem], config: AuditConfig, out: str | Path, *,
              use_ray: Optional[bool] = None, ray_address: Optional[str] = None, workers: int = 1,
              batch_size: int = 16, save_maps: bool = False, progress: bool = True) -> AuditSummary:
    """Audit ``items`` into the results folder ``out`` (resumes it); see the module docstring.
    ``use_ray=None``: Ray when installed. Returns an :class:`AuditSummary`."""
    if workers < 1 or batch_size < 1:
        raise ParameterError(f"workers and batch size must be >= 1, got {workers} and {batch_size}")
    config = replace(config, methods=tuple(m.key for m in resolve_methods(config.methods)),
                     metrics=check_metrics(config.metrics))
    if config.steps < 2:
        raise ParameterError(f"steps must be >= 2, got {config.steps}")
    if config.target not in TARGET_MODES:
        raise ParameterError(f"unknown target mode {config.target!r}; choose from {', '.join(TARGET_MODES)}")
    if use_ray is None:
        use_ray = bool(ray_address) or ray_available()
    if use_ray and not ray_available():
        raise ParameterError("Ray is not installed: pip install 'ray[data]', or run with --no-ray")
    if ray_address and not use_ray:
        raise ParameterError("--ray-address needs Ray (drop --no-ray)")
    if is_model_file(config.model):  # Ray actors may not share the driver's working directory
        config = replace(config, model=str(Path(config.model).resolve()))
    handle = config.load()  # validates model, weights, options, layer
    config = replace(config, layer=config.layer or handle.default_layer)
    handle.module(config.layer)
    folder = ResultsFolder(out)
    if save_maps:
        config = replace(config, maps_dir=str(folder.root.resolve()))
    folder.prepare({**config.manifest(), "model_identity": handle.identity})
    done = folder.done()
    pending = [i for i in items if any((i.path, m) not in done for m in config.methods)]
    summary = AuditSummary(str(folder.root), "ray" if use_ray else "in-process", workers if use_ray else 1,
                           len(items), len(items) - len(pending))
    if not pending:
        return summary
    start = time.perf_counter()
    batches = (_ray_batches(pending, config, ray_address, workers, batch_size) if use_ray
               else _local_batches(pending, AuditWorker(config, handle), batch_size))
    bar = _progress_bar(len(pending), progress)
    try:
        for table in batches:
            table = _without(table, done)
            if table.num_rows:
                folder.write(table)
                done.update(zip(table.column("path").to_pylist(), table.column("method").to_pylist()))
                failed = int(pc.sum(pc.equal(table.column("status"), "failed")).as_py() or 0)
                summary.rows_failed += failed
                summary.rows_ok += table.num_rows - failed
            images = len(set(table.column("path").to_pylist()))
            summary.processed += images
            bar.update(images)
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
    return summary


def _without(table: pa.Table, done: set[tuple[str, str]]) -> pa.Table:
    """Drop rows whose (path, method) is already written (a retried batch, an earlier run)."""
    keep = [(p, m) not in done for p, m in zip(table.column("path").to_pylist(), table.column("method").to_pylist())]
    return table if all(keep) else table.filter(pa.array(keep, pa.bool_()))


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="audit", file=sys.stderr, disable=not enabled, dynamic_ncols=True)


def _chunks(items: Sequence[AuditItem], size: int) -> Iterator[list[AuditItem]]:
    for lo in range(0, len(items), size):
        yield list(items[lo:lo + size])


def _local_batches(pending: Sequence[AuditItem], worker: AuditWorker, batch_size: int) -> Iterator[pa.Table]:
    """In-process: one worker, batches in order."""
    for chunk in _chunks(pending, batch_size):
        yield worker([i.to_row() for i in chunk])


def _ray_batches(pending: Sequence[AuditItem], config: AuditConfig, address: Optional[str], workers: int,
                 batch_size: int) -> Iterator[pa.Table]:
    import ray

    started = not ray.is_initialized()
    if started:
        env = {"env_vars": {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}}
        if address:  # a remote cluster may not have cnnviz installed: ship the package
            env["py_modules"] = [str(Path(__file__).resolve().parents[1])]
            ray.init(address=address, runtime_env=env, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(runtime_env=env, log_to_driver=False, logging_level=logging.WARNING, **LOCAL_RAY)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0)) if config.device in ("auto", "cuda") else 0.0
        cpus = float(resources.get("CPU", 1))
        per_gpu = min(1.0, gpus / workers) if gpus else 0.0
        per_cpu = max(0.1, min(1.0, cpus / workers))
        actor_config = replace(config, threads=max(1, int(per_cpu)), device="cuda" if per_gpu else "cpu")
        ds = ray.data.from_items([i.to_row() for i in pending],
                                 override_num_blocks=max(1, math.ceil(len(pending) / batch_size)))
        # K actors (ActorPoolStrategy(size=K) = the deprecated ``concurrency=K``); Ray Data restarts
        # a dead actor and retries its batch (max_restarts=-1, max_task_retries=-1 by default)
        ds = ds.map_batches(AuditWorker, fn_constructor_kwargs={"config": actor_config}, batch_size=batch_size,
                            batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=workers),
                            num_cpus=per_cpu, num_gpus=per_gpu or None)
        yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")
    finally:
        if started:
            ray.shutdown()
