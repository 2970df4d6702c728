"""Small models shared by the metric tests (not a test module)."""
from __future__ import annotations

import torch
from torch import nn

from cnnviz_core.models import ModelHandle, ModelSpec


class TinyCNN(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def tiny_handle(seed: int = 0) -> ModelHandle:
    torch.manual_seed(seed)
    model = TinyCNN()
    with torch.no_grad():  # non-trivial batch-norm statistics, so that folding them matters
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    spec = ModelSpec(name="tiny", display_name="tiny", class_names=tuple(f"c{i}" for i in range(10)),
                     default_layer="features.5", input_size=32, resize_size=32)
    return ModelHandle(spec, model, torch.device("cpu"), "random")
