"""torchvision ImageNet models: specs built from torchvision's weights enums (offline metadata).

Parameters, GFLOPS, ImageNet acc@1/acc@5, file size, categories and preprocessing sizes are read from
``WeightsEnum.meta`` and ``.transforms()`` - nothing is hand-copied. Weights come through torchvision's
own cache (``$TORCH_HOME/hub/checkpoints``); see :mod:`cnnviz_core.models.loading`.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import torchvision
from torch import nn
from torchvision.models import get_model, get_model_weights

from .registry import ModelSpec, register

IMAGENET_CLASSES: tuple[str, ...] = tuple(
    get_model_weights("resnet18").DEFAULT.meta["categories"]
)

# name -> (default CAM layer, year, paper). The layer is the last spatial feature map, as in the
# Grad-CAM paper ("the last convolutional layer"); for DenseNet the final norm (its ReLU is functional).
ZOO: dict[str, tuple[str, int, str]] = {
    "alexnet": ("features.11", 2012, "Krizhevsky, Sutskever & Hinton, ImageNet Classification with Deep CNNs, NIPS 2012"),
    "vgg16": ("features.29", 2014, "Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015"),
    "vgg19": ("features.35", 2014, "Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015"),
    "googlenet": ("inception5b", 2014, "Szegedy et al., Going Deeper with Convolutions, CVPR 2015"),
    "resnet18": ("layer4", 2015, "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"),
    "resnet50": ("layer4", 2015, "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"),
    "squeezenet1_1": ("features.12", 2016, "Iandola et al., SqueezeNet, 2016"),
    "densenet121": ("features.norm5", 2016, "Huang et al., Densely Connected Convolutional Networks, CVPR 2017"),
    "mobilenet_v3_large": ("features.16", 2019, "Howard et al., Searching for MobileNetV3, ICCV 2019"),
    "efficientnet_b0": ("features.8", 2019, "Tan & Le, EfficientNet, ICML 2019"),
    "convnext_tiny": ("features.7", 2022, "Liu et al., A ConvNet for the 2020s, CVPR 2022"),
}

# Builder arguments that make a random-init model accept the published state_dict (torchvision's
# builders set these themselves when given weights).
_BUILD_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": True, "transform_input": True, "init_weights": False},
}


def build_zoo_model(name: str) -> nn.Module:
    """The torchvision architecture ``name`` with random weights (1000 ImageNet classes)."""
    return get_model(name, weights=None, **_BUILD_KWARGS.get(name, {}))


def finish_zoo_model(name: str, model: nn.Module) -> nn.Module:
    """Post-load fix-ups torchvision's builders apply (GoogLeNet drops its auxiliary heads)."""
    if name == "googlenet":
        model.aux_logits = False
        model.aux1 = None  # type: ignore[assignment]
        model.aux2 = None  # type: ignore[assignment]
    return model


def _facts(weights: Any) -> dict[str, Any]:
    meta = weights.meta
    metrics = meta.get("_metrics", {}).get("ImageNet-1K", {})
    return {
        "params": meta.get("num_params"),
        "gflops": meta.get("_ops"),
        "acc1": metrics.get("acc@1"),
        "acc5": metrics.get("acc@5"),
        "acc_source": f"torchvision {torchvision.__version__} weights metadata ({weights})",
        "file_mb": meta.get("_file_size"),
        "weights": str(weights),
    }


def register_all() -> None:
    """Register every model of :data:`ZOO` with its DEFAULT ImageNet weights."""
    for name, (layer, year, paper) in ZOO.items():
        weights = get_model_weights(name).DEFAULT
        transform = weights.transforms()
        register(
            ModelSpec(
                name=name,
                display_name=f"{name} (ImageNet, torchvision)",
                family="imagenet",
                build=partial(build_zoo_model, name),
                class_names=tuple(weights.meta["categories"]),
                default_layer=layer,
                input_size=int(transform.crop_size[0]),
                resize_size=int(transform.resize_size[0]),
                mean=tuple(transform.mean),
                std=tuple(transform.std),
                description=f"torchvision {name}, {weights} weights",
                paper=paper,
                year=year,
                weights_enum=weights,
                facts=_facts(weights),
            )
        )
