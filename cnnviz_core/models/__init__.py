"""Models: the registry of known models, safe loading, and the :class:`ModelHandle` wrapper."""
from .handle import ModelHandle, Prediction
from .loading import download_file, ensure_checkpoint, load_model
from .registry import ModelSpec, Readiness, conv_layer_paths, get_spec, list_specs, readiness

__all__ = [
    "ModelHandle", "ModelSpec", "Prediction", "Readiness", "conv_layer_paths", "download_file",
    "ensure_checkpoint", "get_spec", "list_specs", "load_model", "readiness",
]
