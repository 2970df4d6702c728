"""Attribution engine: CAM family, gradient family and occlusion behind one shared-pass API.

``METHODS`` (key -> :class:`Method`, registered once with its metadata) is what the UI, CLI and tests
enumerate. ``explain(model, x, methods, target=None, layer=None, **params)`` returns
``{method: np.ndarray}``; ``explain_detailed`` returns :class:`MethodResult` objects (raw and scaled
maps, layer-resolution map, seconds, info). See :mod:`.passes` for how passes are shared.
"""
from __future__ import annotations

from . import cam, gradient, perturbation  # noqa: F401 - importing registers the methods
from .api import RESULTS, MethodResult, explain, explain_detailed, minmax, prepare_input
from .registry import METHODS, Computed, Method, Paper, resolve_methods

#: The fixed order of the registry keys (the UI and CLI list them like this).
ORDER = ("cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam", "scorecam",
         "ablationcam", "saliency", "deconvnet", "guided_backprop", "guided_gradcam", "smoothgrad",
         "integrated_gradients", "occlusion")
_registered = dict(METHODS)
METHODS.clear()
METHODS.update({k: _registered[k] for k in ORDER})
assert len(METHODS) == len(_registered), "every registered method must be listed in ORDER"

CAM_METHODS = tuple(k for k, m in METHODS.items() if m.family == "cam")
GRADIENT_METHODS = tuple(k for k, m in METHODS.items() if m.family == "gradient")

__all__ = ["CAM_METHODS", "GRADIENT_METHODS", "METHODS", "Computed", "Method", "MethodResult", "Paper",
           "RESULTS", "explain", "explain_detailed", "minmax", "prepare_input", "resolve_methods"]
