"""`ModelSpec`: what a *loaded* model is, as the engine and the app use it.

It joins the architecture's facts with what came with the weights (a head of another size, a
labels file, a sidecar, CLI flags): class names, preprocessing, default CAM layer, output kind.
No builder and no weights source live here: see :mod:`.architectures` and :mod:`.sources`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from .architectures import Architecture, Output, Preprocessing


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Names, preprocessing and layer facts of a loaded model (see :class:`~.handle.ModelHandle`)."""

    name: str
    display_name: str
    class_names: tuple[str, ...]
    default_layer: str
    input_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = Preprocessing().mean
    std: tuple[float, float, float] = Preprocessing().std
    head: Output = "softmax"
    description: str = ""
    paper: str = ""
    year: Optional[int] = None
    architecture: str = ""  # the catalog name of the architecture, "" for a program file
    facts: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(input_size=self.input_size, resize_size=self.resize_size, mean=self.mean, std=self.std)


def spec_for(arch: Architecture, *, name: Optional[str] = None, display_name: Optional[str] = None,
             class_names: Optional[Sequence[str]] = None, preprocessing: Optional[Preprocessing] = None,
             default_layer: Optional[str] = None, description: Optional[str] = None) -> ModelSpec:
    """The spec of ``arch`` with some facts replaced (those of a user's file)."""
    prep = preprocessing or arch.preprocessing
    return ModelSpec(
        name=name or arch.name, display_name=display_name or arch.display_name,
        class_names=tuple(class_names) if class_names is not None else arch.class_names,
        default_layer=default_layer or arch.default_layer, input_size=prep.input_size, resize_size=prep.resize_size,
        mean=prep.mean, std=prep.std, head=arch.output,
        description=arch.description if description is None else description,
        paper=arch.paper, year=arch.year, architecture=arch.name, facts=arch.facts,
    )


def spec_digest(spec: ModelSpec) -> str:
    """A short digest of what changes results: class names, preprocessing, default layer, head."""
    facts = [spec.class_names, spec.input_size, spec.resize_size, spec.mean, spec.std, spec.default_layer, spec.head]
    return hashlib.sha1(json.dumps(facts).encode()).hexdigest()[:12]
