"""Deep Feature Factorization (Collins, Achanta & Süsstrunk 2018, "Deep Feature Factorization for
Concept Discovery").

The layer's activations for the image, ``A`` (``C`` channels x ``hw`` positions, non-negative), are
factorized by non-negative matrix factorization into ``k`` concepts,

    A ~= W H,   W >= 0 (C x k): the concepts' embeddings in channel space,
                H >= 0 (k x hw): where each concept is, one heatmap per concept,

minimizing ``||A - W H||_F`` with Lee & Seung's multiplicative updates (:func:`nmf`: torch, float64,
a fixed number of iterations from a seeded random start, so deterministic; the updates are
scikit-learn's ``solver="mu"`` ones, same denominators' epsilon). The scale shared by ``W`` and ``H``
is fixed by scaling each heatmap to a maximum of 1, so a concept's embedding is the activation vector
where the concept is fully present. Concepts are ordered by their share of the reconstruction
(``||W_j||_1 * ||H_j||_1``), largest first.

Each concept's top classes (pytorch-grad-cam's ``computation_on_concepts``, generalized): the
embedding ``W_j`` is put at every position of the layer (a constant ``(C, h, w)`` map) and the part
of the network after the layer runs on the ``k`` maps in one batch (:mod:`.tail`; a full forward
with the layer's output replaced where the graph cannot be split). For a GAP -> linear head this is
exactly ``fc(W_j)``, what pgc computes with the model's ``fc``. Scores are the head's probabilities
(softmax; per-class sigmoid for multi-label heads), as pgc shows them.

The map :func:`explain` returns: the heatmap of the concept the classifier associates most with the
target class (the highest target probability among the concepts), ``(H, W)`` in [0, 1] (min-max
scaled at layer resolution, bilinearly upsampled). ``info["concepts"]``: per concept (in order) its
``classes`` / ``names`` / ``scores`` (top ``top_classes``) and ``target_score``;
``info["concept_maps"]``: all ``k`` heatmaps ``(k, H, W)`` float32 in [0, 1] (numpy);
``info["concept_embeddings"]``: ``W`` transposed, ``(k, C)`` float32 (numpy);
``info["concept"]``: the index of the returned one; ``info["nmf"]``: iterations and relative error.

Where we follow the paper rather than pytorch-grad-cam: the paper factorizes post-ReLU activations
(non-negative), so we factorize ``ReLU(A)`` (identical at ReLU outputs; for layers with negative
outputs the clamped fraction is reported). pgc instead subtracts each channel's minimum before the
factorization and adds it back to the embeddings, which changes the factorization even at
non-negative layers wherever a channel is positive everywhere. pgc also uses scikit-learn's
coordinate-descent solver from its own random start; parity is therefore tested against
scikit-learn's multiplicative-update NMF from the same start (the solver pgc wraps), and the concept
scores against the classifier applied directly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .cam import upsample
from .passes import PassContext
from .registry import Computed, Paper, Params, Product, integer, positive_int, register
from .tail import layer_tail, replaced_output

P = Product
#: scikit-learn's EPSILON (``np.finfo(np.float32).eps``): replaces zero denominators of the updates.
EPSILON = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class DFFParams(Params):
    """``concepts``: number of NMF components ``k``; ``nmf_iters``: multiplicative-update iterations;
    ``seed``: of the random start; ``top_classes``: classes listed per concept."""

    concepts: int = 5
    nmf_iters: int = 200
    seed: int = 0
    top_classes: int = 3

    def __post_init__(self) -> None:
        self._set("concepts", positive_int("concepts", self.concepts))
        self._set("nmf_iters", positive_int("nmf_iters", self.nmf_iters))
        self._set("top_classes", positive_int("top_classes", self.top_classes))
        self._set("seed", integer("seed", self.seed))


def random_init(x: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W0 (n, k), H0 (k, m))`` for ``x`` (n, m) >= 0: ``|N(0, 1)| * sqrt(mean(x) / k)`` (the
    scale of scikit-learn's ``init="random"``), drawn from a CPU generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    avg = float(x.double().mean().clamp(min=0).sqrt()) / k ** 0.5
    h = torch.randn(k, x.shape[1], generator=g, dtype=torch.float64).abs() * avg
    w = torch.randn(x.shape[0], k, generator=g, dtype=torch.float64).abs() * avg
    return w.to(x.device), h.to(x.device)


def nmf(x: torch.Tensor, w: torch.Tensor, h: torch.Tensor, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lee & Seung's multiplicative updates for ``min ||x - w h||_F``, ``w, h >= 0``, from ``(w, h)``,
    ``iterations`` times (``w`` then ``h`` each time, as scikit-learn's ``solver="mu"``; a zero
    denominator becomes :data:`EPSILON`). float64; returns new tensors."""
    x, w, h = x.double(), w.double().clone(), h.double().clone()

    def safe(d: torch.Tensor) -> torch.Tensor:
        return torch.where(d == 0, torch.full_like(d, EPSILON), d)

    for _ in range(iterations):
        w *= (x @ h.T) / safe(w @ (h @ h.T))
        h *= (w.T @ x) / safe(w.T @ w @ h)
    return w, h


def concept_logits(ctx: PassContext, embeddings: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, str]:
    """``(k, classes)`` logits of the network after ``ctx.layer`` for constant maps of each embedding
    ``(k, C)``, one batch, under the lock and ``inference_mode``; and how they were computed."""
    a = ctx.product(P.ACTIVATION)
    maps = embeddings.to(a.dtype)[:, :, None, None].expand(-1, -1, *hw).contiguous()
    with ctx.handle.lock, torch.inference_mode():
        tail = layer_tail(ctx.model, ctx.layer)
        if tail is not None and not torch.allclose(tail(a), ctx.product(P.LOGITS), rtol=1e-4, atol=1e-4):
            tail = None
        step = getattr(ctx.handle, "max_batch", None) or maps.shape[0]  # programs exported for batch 1
        parts = [maps[i:i + step] for i in range(0, maps.shape[0], step)]
        if tail is not None:
            return torch.cat([tail(m) for m in parts]), "network after the layer (tail)"
        outs = []
        for m in parts:
            with replaced_output(ctx.handle.module(ctx.layer), m):
                outs.append(ctx.model(ctx.x.expand(m.shape[0], -1, -1, -1)))
        return torch.cat(outs), "full forward with the layer's output replaced (graph not splittable)"


@register("dff", display_name="Deep Feature Factorization",
          paper=Paper("Collins et al.", 2018, "Deep Feature Factorization for Concept Discovery",
                      "https://arxiv.org/abs/1806.10206"),
          family="cam", passes=(P.ACTIVATION,), needs=(), class_discriminative=False,
          cost="1 forward + NMF + 1 batched head forward (k concepts)", params=DFFParams)
def dff(ctx: PassContext, p: DFFParams) -> Computed:
    """Deep Feature Factorization (Collins et al. 2018): NMF of the layer's activations into k
    concepts, each a heatmap and a set of top classes; the map is the concept most associated with
    the target class, ``(H, W)`` in [0, 1]; all concepts in ``info`` (module doc)."""
    a = ctx.product(P.ACTIVATION)[0]
    c, h, w = a.shape
    k = p.concepts
    negative = float((a < 0).double().mean())
    x = a.clamp(min=0).reshape(c, h * w).double()
    w0, h0 = random_init(x, k, p.seed)
    emb, heat = nmf(x, w0, h0, p.nmf_iters)
    peak = heat.amax(dim=1)
    scale = torch.where(peak > 0, peak, torch.ones_like(peak))
    heat, emb = heat / scale[:, None], emb * scale[None, :]
    order = torch.argsort(emb.sum(dim=0) * heat.sum(dim=1), descending=True, stable=True)
    emb, heat = emb[:, order], heat[order]
    error = float(torch.linalg.norm(x - emb @ heat) / torch.linalg.norm(x).clamp(min=1e-300))

    logits, how = concept_logits(ctx, emb.T, (h, w))
    probs = ctx.handle.probabilities(logits.float())
    target = ctx.resolved_target()
    best = int(torch.argmax(probs[:, target]))
    top = min(p.top_classes, probs.shape[1])
    concepts = []
    for j in range(k):
        scores, classes = probs[j].topk(top)
        concepts.append({"index": j, "classes": [int(i) for i in classes],
                         "names": [ctx.handle.class_name(int(i)) for i in classes],
                         "scores": [float(s) for s in scores], "target_score": float(probs[j, target])})
    layer_maps = torch.stack([_unit(m) for m in heat.reshape(k, h, w).to(a.dtype)])
    maps = torch.stack([upsample(m, ctx.input_size) for m in layer_maps])
    info: dict[str, Any] = {
        "concept": best, "concepts": concepts,
        "concept_maps": maps.detach().to("cpu", torch.float32).numpy(),
        "concept_embeddings": emb.T.detach().to("cpu", torch.float32).numpy(),
        "nmf": {"concepts": k, "iterations": p.nmf_iters, "relative_error": error, "seed": p.seed},
        "concept_head": how,
    }
    if negative > 0:
        info["clamped"] = f"{negative:.1%} of the activations were negative and set to 0 (NMF needs A >= 0)"
    return Computed(raw=maps[best], layer_map=layer_maps[best], info=info)


def _unit(m: torch.Tensor) -> torch.Tensor:
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else torch.zeros_like(m)
