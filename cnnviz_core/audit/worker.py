"""The audit worker: loads the model ONCE, then turns batches of :class:`AuditItem` rows into result
rows (one per image and method). The same class runs in-process (``--no-ray``) and as a Ray Data
callable class (``map_batches(AuditWorker, concurrency=K)``: one model per actor).

Per batch: decode every image (a bad one becomes a ``failed`` row with the reason), one batched
attribution pass for all good images (:func:`.batched.explain_batch`), one batched run of the
perturbation forwards for the deletion/insertion curves of every method
(:func:`.faithfulness.curve_aucs`), then the pointing games per image. If anything unexpected
breaks the batch, its images are retried one at a time so only the culprit fails.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from ..errors import CnnvizError
from ..images import load_image
from ..models import ModelHandle, UserModelOptions, load_model
from .batched import explain_batch
from ..metrics import energy_in_mask, pointing_game, saliency_2d
from .faithfulness import CURVE_METRICS, curve_aucs, object_mask, pointing_tolerance, resize_mask
from .results import MAPS_DIR, empty_row, map_key, rows_to_table
from .sources import AuditItem


TARGET_MODES = ("auto", "predicted", "label")


@dataclass(frozen=True)
class AuditConfig:
    """What to compute. ``weights``: as for :func:`load_model` (None = random init).
    ``target``: ``auto`` (the ground-truth label when known, else the top-1 prediction),
    ``predicted`` or ``label``. ``steps``: deletion/insertion steps. ``maps_dir``: where to save
    ``.npy`` maps (None: not saved). ``threads``: torch CPU threads per worker (0: leave as is)."""

    model: str
    methods: tuple[str, ...]
    metrics: tuple[str, ...] = ("deletion", "insertion")
    weights: Optional[str] = "default"
    layer: Optional[str] = None
    device: str = "auto"
    target: str = "auto"
    steps: int = 16
    chunk: int = 128
    maps_dir: Optional[str] = None
    threads: int = 0
    #: What goes with a model FILE (``--arch``, ``--labels``, ``--input-size``, ``--mean``, ``--std``);
    #: a frozen dataclass of tuples, so the config still pickles to Ray actors.
    options: Optional[UserModelOptions] = None

    def manifest(self) -> dict[str, Any]:
        """JSON-able description (written to ``_audit.json``; maps_dir/threads/chunk left out)."""
        doc = asdict(self)
        for key in ("maps_dir", "threads", "chunk", "device"):
            doc.pop(key)
        options = {k: list(v) if isinstance(v, tuple) else v for k, v in (doc.pop("options") or {}).items()
                   if v is not None}
        return {**doc, "methods": list(self.methods), "metrics": list(self.metrics),
                **({"options": options} if options else {})}

    def load(self) -> ModelHandle:
        """The model this config names, with its options (what every worker, Ray actors too, calls)."""
        return load_model(self.model, self.weights, self.device, options=self.options)


class AuditWorker:
    """Callable on a batch (pandas DataFrame or list of item rows) -> Arrow table of result rows."""

    def __init__(self, config: AuditConfig, handle: Optional[ModelHandle] = None) -> None:
        if config.threads:
            torch.set_num_threads(config.threads)
        self.config = config
        self.handle = handle or config.load()
        self.layer = config.layer or self.handle.default_layer
        self.tolerance = pointing_tolerance(self.handle.spec.input_size)

    def __call__(self, batch: Any) -> pa.Table:
        records = batch.to_dict("records") if hasattr(batch, "to_dict") else list(batch)
        items = [AuditItem.from_row(r) for r in records]
        try:
            rows = self.audit(items)
        except Exception:  # noqa: BLE001 - isolate the failing image(s), never lose the batch
            rows = []
            for item in items:
                try:
                    rows += self.audit([item])
                except Exception as exc:  # noqa: BLE001
                    rows += self._failed(item, f"{type(exc).__name__}: {exc}")
        return rows_to_table(rows)

    # ---- one batch -----------------------------------------------------------------------------
    def audit(self, items: list[AuditItem]) -> list[dict[str, Any]]:
        start = time.perf_counter()
        rows: list[dict[str, Any]] = []
        good: list[tuple[AuditItem, torch.Tensor]] = []
        for item in items:
            try:
                good.append((item, self.handle.preprocess(load_image(item.path))))
            except (CnnvizError, OSError, ValueError) as exc:
                rows += self._failed(item, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        if not good:
            return rows
        x = torch.cat([t for _, t in good])
        targets = torch.tensor([self._wanted_target(i) for i, _ in good], dtype=torch.long)
        result = explain_batch(self.handle, x, self.config.methods, layer=self.layer, targets=targets)
        probs = self.handle.probabilities(result.logits.float()).cpu()
        prediction = probs.argmax(1)
        tgt = result.targets.cpu()
        aucs = self._curves(x, result, tgt)
        masks = [self._mask(item, int(tgt[n]), x.shape[-2:]) for n, (item, _) in enumerate(good)]
        names = self.handle.class_names
        for n, (item, _) in enumerate(good):
            for method in self.config.methods:
                row = empty_row(item.path, method)
                row.update(model=self.handle.name, layer=self.layer, label=item.label,
                           label_name=_name(names, item.label), prediction=int(prediction[n]),
                           prediction_name=_name(names, int(prediction[n])), target=int(tgt[n]),
                           target_name=_name(names, int(tgt[n])), score=float(probs[n, tgt[n]]),
                           seconds=result.seconds[method][n])
                m = result.maps[method][n]
                if m is None:
                    row.update(status="failed", error=result.errors[method][n] or "method unavailable")
                    rows.append(row)
                    continue
                for metric in CURVE_METRICS:
                    if metric in aucs.get(method, {}):
                        row[f"{metric}_auc"] = float(aucs[method][metric][n])
                mask, note = masks[n]
                if "pointing" in self.config.metrics and mask is not None and mask.any():
                    row["pointing_hit"] = float(pointing_game(m, mask, self.tolerance))
                    row["energy_pointing"] = energy_in_mask(m, mask)
                row["error"] = note
                row["map_path"] = self._save_map(item.path, method, m)
                rows.append(row)
        spent = time.perf_counter() - start - sum(sum(v) for v in result.seconds.values())
        for row in rows:  # spread decoding and metric time evenly over the ok rows
            if row["status"] == "ok":
                row["seconds"] += max(spent, 0.0) / max(1, len(good) * len(self.config.methods))
        return rows

    def _curves(self, x: torch.Tensor, result: Any, targets: torch.Tensor) -> dict[str, dict[str, np.ndarray]]:
        """``{method: {metric: (N,) AUCs}}`` for every method in one batched run (NaN where a
        method has no map for an image)."""
        wanted = [m for m in CURVE_METRICS if m in self.config.metrics]
        usable = {k: maps for k, maps in result.maps.items() if any(m is not None for m in maps)}
        if not wanted or not usable:
            return {}
        size = tuple(x.shape[-2:])
        saliency = {k: torch.stack([saliency_2d(m) if m is not None else torch.zeros(size) for m in maps])
                    for k, maps in usable.items()}
        aucs = curve_aucs(self.handle, x, saliency, targets, metrics=wanted, steps=self.config.steps,
                          chunk=self.config.chunk)
        out = {}
        for key, per_metric in aucs.items():
            missing = np.array([m is None for m in usable[key]])
            out[key] = {name: np.where(missing, np.nan, v.cpu().numpy()) for name, v in per_metric.items()}
        return out

    def _wanted_target(self, item: AuditItem) -> int:
        mode = self.config.target
        if mode == "predicted" or (mode == "auto" and item.label < 0):
            return -1
        if item.label < 0:
            raise CnnvizError(f"{Path(item.path).name}: no ground-truth label for --target label")
        return item.label

    def _mask(self, item: AuditItem, target: int, size: Any) -> tuple[Optional[np.ndarray], str]:
        """The target's object mask in the model's view (cropped like the image), or a note why not."""
        if not item.mask or "pointing" not in self.config.metrics:
            return None, ""
        try:
            with Image.open(item.mask) as im:
                values = np.asarray(im.convert("L") if im.mode not in ("L", "P") else im)
        except (OSError, ValueError) as exc:
            return None, f"mask unreadable: {exc}"
        obj = object_mask(values, target, item.object_classes, item.object_values)
        if obj is None:
            return None, f"target class {target} is not among the scene's objects"
        view = np.asarray(self.handle.crop(Image.fromarray(obj.astype(np.uint8) * 255).convert("RGB")))[..., 0]
        return resize_mask(view >= 128, tuple(int(s) for s in size)), ""

    def _save_map(self, path: str, method: str, m: np.ndarray) -> str:
        if not self.config.maps_dir:
            return ""
        rel = Path(MAPS_DIR) / map_key(path) / f"{method.replace('+', 'p')}.npy"
        dest = Path(self.config.maps_dir) / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, m.astype(np.float16) if m.ndim == 2 else m)  # (H, W) maps are in [0, 1]
        os.replace(tmp, dest)
        return rel.as_posix()

    def _failed(self, item: AuditItem, reason: str) -> list[dict[str, Any]]:
        rows = []
        for method in self.config.methods:
            row = empty_row(item.path, method)
            row.update(model=self.handle.name, layer=self.layer, label=item.label,
                       label_name=_name(self.handle.class_names, item.label), status="failed",
                       error=reason or "failed")
            rows.append(row)
        return rows


def _name(names: list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else ""
