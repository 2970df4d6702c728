"""Attribution engine: CAM family, gradient family and occlusion behind one shared-pass API.

``METHODS`` (key -> :class:`Method`, registered once with its metadata, in definition order) is
what the UI, CLI and tests enumerate. ``explain(model, x, methods, target=None, layer=None, **params)``
returns ``{method: np.ndarray}``; ``explain_detailed`` returns :class:`MethodResult` objects (raw and
scaled maps, layer-resolution map, seconds, info). A target is a class or a unit
(:class:`ChannelTarget`, :class:`NeuronTarget`, see :mod:`.targets`). See :mod:`.passes` for how
passes are shared, :mod:`.receptive_field` for the units' receptive fields.
"""
from __future__ import annotations

# Importing registers the methods; the order of these imports is the order of METHODS.
from . import cam, cam_variants, fullgrad, fusion, dff, perturbation, perturbation_cams  # noqa: F401  isort: skip
from . import gradient, gradient_extra, path_methods, lrp, occlusion, rise, surrogate  # noqa: F401  isort: skip
from .api import RESULTS, MethodResult, UnitInfo, explain, explain_detailed, minmax, prepare_input
from .registry import (FAMILIES, METHODS, AblationCAMParams, CAMParams, Computed, IntegratedGradientsParams, Method, NoParams,
                       OcclusionParams, Paper, Params, Product, ScoreCAMParams, SmoothGradParams,
                       resolve_methods)
from .targets import ChannelTarget, ClassTarget, NeuronTarget, Target, UnitTarget

#: The registry keys in their fixed order (the UI and CLI list them like this).
ORDER = tuple(METHODS)
CAM_METHODS = tuple(k for k, m in METHODS.items() if m.family == "cam")
GRADIENT_METHODS = tuple(k for k, m in METHODS.items() if m.family == "gradient")
UNIT_METHODS = tuple(k for k, m in METHODS.items() if m.unit_targets)

__all__ = ["CAM_METHODS", "FAMILIES", "GRADIENT_METHODS", "METHODS", "CAMParams", "ORDER", "UNIT_METHODS", "AblationCAMParams",
           "ChannelTarget", "ClassTarget", "Computed", "IntegratedGradientsParams", "Method", "MethodResult",
           "NeuronTarget", "NoParams", "OcclusionParams", "Paper", "Params", "Product", "RESULTS",
           "ScoreCAMParams", "SmoothGradParams", "Target", "UnitInfo", "UnitTarget", "explain",
           "explain_detailed", "minmax", "prepare_input", "resolve_methods"]
