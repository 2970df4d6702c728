"""Models: architectures, weights sources, the catalog, safe loading of user files, and the
:class:`ModelHandle` wrapper. See :mod:`.catalog` for what is registered and :mod:`.loading` for
the one loader."""
from .architectures import Architecture, Preprocessing
from .card import ModelSpec
from .catalog import IMAGENET_CLASSES, ModelEntry, entries, get_architecture, get_entry
from .handle import ModelHandle, Prediction
from .layers import conv_layer_paths, default_cam_layer
from .loading import is_model_file, load_model, load_user_model
from .sources import (
    Bundled, ImageNetCache, RandomInit, Readiness, StateDictFile, WeightsSource, download_file, hub_checkpoint_path,
)
from .userfiles import MODEL_SUFFIXES, UserModelOptions, read_labels

__all__ = [
    "Architecture", "Bundled", "IMAGENET_CLASSES", "ImageNetCache", "MODEL_SUFFIXES", "ModelEntry", "ModelHandle",
    "ModelSpec", "Prediction", "Preprocessing", "RandomInit", "Readiness", "StateDictFile", "UserModelOptions",
    "WeightsSource", "conv_layer_paths", "default_cam_layer", "download_file", "entries", "get_architecture",
    "get_entry", "hub_checkpoint_path", "is_model_file", "load_model", "load_user_model", "read_labels",
]
