"""Train our own offline models on procedural scenes (:mod:`cnnviz_core.scenes`).

Usage (one model at a time; about 8 and 6 minutes on 2 CPU cores with AMX)::

    python -m cnnviz_core.train shapes-cnn         [--seed 1] [--steps N] [--batch-size B]
    python -m cnnviz_core.train shapes-cnn-biased  [--out cnnviz_core/weights] [--threads 2]

Recipes (:data:`RECIPES`; AdamW, one-cycle learning rate, batch 32):

* ``shapes-cnn`` (1000 steps): multi-label (BCE with logits over the 6 classes) on 1- and 2-object
  scenes (alternating); a third of the scenes has no tag, the rest a *uniformly random* tag,
  independent of the objects, so the tag carries no information (a "shuffle" tag would: it names an
  absent class). Curriculum: the first 30 % of the scenes use :data:`EASY_STYLE` (little clutter).
  Architecture: stride-4 stage4 and a gated fusion layer (``ShapesCNN(cam_stride=4,
  gated_fusion=True)``), so that its CAM maps stay on the objects (ring holes included).
* ``shapes-cnn-biased`` (800 steps): softmax cross-entropy on single-object scenes whose tag always
  matches the class, drawn with :data:`BIASED_STYLE` (small, low-contrast shapes), so that the tag is
  by far the easier cue: the model learns the tag, not the shapes, and its accuracy collapses when
  the tag is shuffled (shorter runs had not even learned the tag well: 63 % with 400 steps).

Data are generated on the fly (one DataLoader worker) and deterministic: step ``s`` uses scenes
``s*B .. s*B+B-1`` of the training seed (``generate_scene(seed, index)``). Training seeds are
``0 .. 9999``; held-out figures use seeds ``>= 10_000`` (:data:`HELDOUT_SEED` for single-object
scenes, ``+1`` for two-object ones), so the two never share a scene. Same seed, steps, batch size,
threads, precision and CPU -> same weights. ``--precision auto`` autocasts the forward pass to
bfloat16 on CPUs with AMX (2-3x faster there); elsewhere it trains in float32 (about 2x slower).

Writes ``OUT/NAME.pt`` (plain ``state_dict``, load with ``torch.load(path, weights_only=True)``) and
``OUT/NAME.json`` (architecture, classes, normalization, training and held-out figures).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .errors import ParameterError
from .models.shapes import DEFAULT_WIDTHS, ShapesCNN
from .scenes import CLASSES, DEFAULT_STYLE, SceneStyle, generate_scene

INPUT_SIZE = 128
HELDOUT_SEED = 10_000
MAX_TRAIN_SEED = HELDOUT_SEED - 1
DEFAULT_OUT = Path(__file__).resolve().parent / "weights"
#: Curriculum of shapes-cnn: its first 30 % of scenes have little clutter and at most one blob.
EASY_STYLE = SceneStyle(clutter=0.25, blobs=(0, 1))
CURRICULUM = 0.3
#: Harder shapes for the biased model only: small and low-contrast, so the corner tag wins.
BIASED_STYLE = SceneStyle(diameter_one=(0.18, 0.30), min_contrast=40.0, max_contrast=70.0)


@dataclass(frozen=True)
class Recipe:
    """How one model is trained: head/loss, default steps and batch, and its scene mix."""

    display_name: str
    head: str  # "multilabel" (BCE with logits) or "softmax" (cross-entropy on the first object)
    steps: int
    batch_size: int
    lr: float
    biased: bool
    cam_stride: int = 8
    gated_fusion: bool = False

    def scene_args(self, index: int, total: int) -> dict:
        """Keyword arguments of ``generate_scene`` for training scene ``index`` of ``total``."""
        if self.biased:
            return {"objects": 1, "tag": "match", "style": BIASED_STYLE}
        style = EASY_STYLE if index < CURRICULUM * total else DEFAULT_STYLE
        return {"objects": 1 + index % 2, "tag": "none" if (index // 2) % 3 == 0 else "random",
                "style": style}


RECIPES: dict[str, Recipe] = {
    "shapes-cnn": Recipe("Shapes CNN (ours)", "multilabel", 1000, 32, 3e-3, biased=False, cam_stride=4,
                         gated_fusion=True),
    "shapes-cnn-biased": Recipe("Shapes CNN, biased by a corner tag (ours)", "softmax", 800, 32,
                                3e-3, biased=True),
}


def to_input(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 RGB -> ``(N, 3, H, W)`` float32, ``(x / 255 - mean) / std``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


class _Batches(torch.utils.data.Dataset):
    """Item ``s`` = training batch ``s``: images ``(B, H, W, 3)`` uint8 and multi-hot ``(B, 6)``."""

    def __init__(self, recipe: Recipe, seed: int, steps: int, batch_size: int) -> None:
        self.recipe, self.seed, self.steps, self.batch_size = recipe, seed, steps, batch_size

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        idx = range(step * self.batch_size, (step + 1) * self.batch_size)
        total = self.steps * self.batch_size
        scenes = [generate_scene(self.seed, i, size=INPUT_SIZE, **self.recipe.scene_args(i, total))
                  for i in idx]
        y = np.zeros((len(scenes), len(CLASSES)), np.float32)
        for row, scene in zip(y, scenes):
            row[scene.class_indices] = 1
        return np.stack([s.image for s in scenes]), y


def _channel_stats(recipe: Recipe, seed: int, count: int = 256) -> tuple[list[float], list[float]]:
    """Per-channel mean/std in [0, 1] of training scenes ``0 .. count-1`` (curriculum off)."""
    x = np.stack([generate_scene(seed, i, size=INPUT_SIZE, **recipe.scene_args(i, total=0)).image
                  for i in range(count)]).reshape(-1, 3).astype(np.float64) / 255
    return [round(float(v), 4) for v in x.mean(0)], [round(float(v), 4) for v in x.std(0)]


@torch.no_grad()
def _logits(model: nn.Module, images: np.ndarray, mean, std, batch_size: int) -> torch.Tensor:
    out = [model(to_input(images[i:i + batch_size], mean, std))
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def evaluate(model: nn.Module, mean: Sequence[float], std: Sequence[float], *,
             seed: int = HELDOUT_SEED, n_single: int = 200, n_two: int = 200,
             batch_size: int = 50) -> dict:
    """Held-out figures of ``model`` (a ShapesCNN-like ``(N,3,128,128) -> (N,6)`` classifier).

    ``single_top1``: argmax == class on ``n_single`` single-object scenes of ``seed`` without tag;
    ``match_tag_top1`` / ``shuffled_tag_top1``: the same scenes with a matching / shuffled tag;
    ``two_object_top2``: the two present classes are the two largest logits, on ``n_two`` two-object
    scenes of ``seed + 1`` (None if ``n_two == 0``). Fractions in [0, 1].
    """
    was_training = model.training
    model.eval()
    res: dict = {"seed": seed, "n_single": n_single, "n_two": n_two}
    for key, tag in (("single_top1", "none"), ("match_tag_top1", "match"),
                     ("shuffled_tag_top1", "shuffle")):
        scenes = [generate_scene(seed, i, size=INPUT_SIZE, tag=tag) for i in range(n_single)]
        pred = _logits(model, np.stack([s.image for s in scenes]), mean, std, batch_size).argmax(1)
        truth = torch.tensor([s.objects[0].class_index for s in scenes])
        res[key] = round(float((pred == truth).float().mean()), 4)
    res["two_object_top2"] = None
    if n_two:
        scenes = [generate_scene(seed + 1, i, size=INPUT_SIZE, objects=2) for i in range(n_two)]
        logits = _logits(model, np.stack([s.image for s in scenes]), mean, std, batch_size)
        top2 = logits.topk(2).indices
        hits = [set(t.tolist()) == set(s.class_indices) for t, s in zip(top2, scenes)]
        res["two_object_top2"] = round(float(np.mean(hits)), 4)
    model.train(was_training)
    return res


def load_trained(name: str, directory: str | Path = DEFAULT_OUT) -> tuple[ShapesCNN, dict]:
    """``(model in eval mode, metadata)`` of ``directory/NAME.pt`` + ``NAME.json`` (strict load)."""
    directory = Path(directory)
    meta = json.loads((directory / f"{name}.json").read_text())
    model = ShapesCNN(**meta["arch_kwargs"])
    model.load_state_dict(torch.load(directory / f"{name}.pt", weights_only=True), strict=True)
    return model.eval(), meta


def _use_bf16(precision: str) -> bool:
    """``auto``: bfloat16 autocast only where the CPU has AMX tiles (2-3x faster there; elsewhere
    bf16 convolutions are emulated and slower than float32)."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ParameterError(f"--precision must be auto, fp32 or bf16, got {precision!r}")
    if precision == "auto":
        return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    return precision == "bf16"


def train(name: str, *, seed: int = 1, steps: int | None = None, batch_size: int | None = None,
          out: Path = DEFAULT_OUT, threads: int = 2, heldout: int = 200, precision: str = "auto",
          log: Callable[[str], None] = partial(print, flush=True)) -> dict:
    """Train recipe ``name``, write ``out/NAME.pt`` and ``out/NAME.json``; returns the metadata.
    Weights and optimizer stay float32; ``precision`` only selects bf16 autocast of the forward."""
    if name not in RECIPES:
        raise ParameterError(f"unknown model {name!r}; expected one of {', '.join(RECIPES)}")
    if not 0 <= seed <= MAX_TRAIN_SEED:
        raise ParameterError(f"--seed must be in 0..{MAX_TRAIN_SEED} "
                             f"(held-out seeds start at {HELDOUT_SEED})")
    recipe = RECIPES[name]
    steps, batch_size = steps or recipe.steps, batch_size or recipe.batch_size
    if steps < 1 or batch_size < 2 or threads < 1 or heldout < 1:
        raise ParameterError("--steps, --threads and --heldout must be >= 1, --batch-size >= 2")
    bf16 = _use_bf16(precision)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    mean, std = _channel_stats(recipe, seed)
    arch_kwargs = {"num_classes": len(CLASSES), "widths": list(DEFAULT_WIDTHS), "cam_stride": recipe.cam_stride,
                   "gated_fusion": recipe.gated_fusion}
    model = ShapesCNN(**arch_kwargs).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.lr, total_steps=steps, pct_start=0.1)
    loader = torch.utils.data.DataLoader(_Batches(recipe, seed, steps, batch_size), batch_size=None,
                                         num_workers=1, prefetch_factor=2)
    t0, avg, loss_value = time.time(), None, float("nan")
    model.train()
    for step, (images, y) in enumerate(loader, start=1):
        x = to_input(images.numpy(), mean, std).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x).float()
        if recipe.head == "multilabel":
            loss = F.binary_cross_entropy_with_logits(logits, y)
        else:
            loss = F.cross_entropy(logits, y.argmax(1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_value = loss.item()
        avg = loss_value if avg is None else 0.9 * avg + 0.1 * loss_value
        if step % 25 == 0 or step == steps:
            el = time.time() - t0
            rate = step * batch_size / el
            log(f"step {step}/{steps}  loss {avg:.4f}  {rate:.1f} img/s  {el:.0f} s")
    seconds = round(time.time() - t0, 1)
    model = model.to(memory_format=torch.contiguous_format)
    figures = evaluate(model, mean, std, n_single=heldout, n_two=heldout)
    log("held-out: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    meta = {
        "name": name, "display_name": recipe.display_name, "arch": "ShapesCNN",
        "arch_kwargs": arch_kwargs,
        "classes": list(CLASSES), "input_size": INPUT_SIZE, "mean": mean, "std": std,
        "head": recipe.head, "default_layer": model.cam_layer,
        "train": {"seed": seed, "steps": steps, "batch_size": batch_size, "lr": recipe.lr,
                  "threads": threads, "precision": "bf16-autocast" if bf16 else "fp32",
                  "seconds": seconds, "final_loss": round(avg, 5),
                  "torch": torch.__version__,
                  "data": "1 object, tag always matches, BIASED_STYLE (small, low contrast)"
                          if recipe.biased else "1 or 2 objects, tag none (1/3) or uniformly "
                          "random (2/3), first 30 % of scenes with EASY_STYLE"},
        "heldout": figures,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, out / f"{name}.pt")
    (out / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    log(f"wrote {out / name}.pt and .json ({seconds} s of training)")
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (see module docstring); returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m cnnviz_core.train",
                                description="Train shapes-cnn or shapes-cnn-biased on scenes.")
    p.add_argument("name", choices=sorted(RECIPES))
    p.add_argument("--seed", type=int, default=1, help=f"training seed, 0..{MAX_TRAIN_SEED}")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: per recipe)")
    p.add_argument("--batch-size", type=int, default=None, help="scenes per step (default 32)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--heldout", type=int, default=200, help="held-out scenes per figure")
    p.add_argument("--precision", default="auto", help="auto (bf16 autocast on AMX CPUs), fp32, bf16")
    a = p.parse_args(argv)
    try:
        meta = train(a.name, seed=a.seed, steps=a.steps, batch_size=a.batch_size, out=a.out,
                     threads=a.threads, heldout=a.heldout, precision=a.precision)
    except ParameterError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0 if math.isfinite(meta["train"]["final_loss"]) else 1


if __name__ == "__main__":
    sys.exit(main())
