"""ZFNet (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
https://arxiv.org/abs/1311.2901), defined from the paper's Figure 3.

224x224x3 input; conv1 96 filters 7x7 stride 2 (-> 110x110), 3x3 max-pool stride 2 (-> 55x55),
local contrast normalization; conv2 256 filters 5x5 stride 2 (-> 26x26), pool (-> 13x13), norm;
conv3 384, conv4 384, conv5 256 filters 3x3 stride 1 (13x13); pool (-> 6x6); fc6 4096, fc7 4096,
fc8 1000 (softmax). No trained weights ship with torchvision: this model is untrained unless a
state_dict is given, and the app says so.
"""
from __future__ import annotations

import torch
from torch import nn

#: Figures reported in the paper (Table 2, "1 convnet", ImageNet 2012 validation error %).
PAPER_TOP1_ERROR = 38.4
PAPER_TOP5_ERROR = 16.5


class ZFNet(nn.Module):
    """Input ``(N, 3, 224, 224)``; output ``(N, num_classes)`` logits. Layout mirrors torchvision's
    AlexNet (``features``, ``avgpool``, ``classifier``) so the same layer paths style applies."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=7, stride=2, padding=1),  # 0: conv1 -> 110
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),  # 2: -> 55
            nn.LocalResponseNorm(5),
            nn.Conv2d(96, 256, kernel_size=5, stride=2),  # 4: conv2 -> 26
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),  # 6: -> 13
            nn.LocalResponseNorm(5),
            nn.Conv2d(256, 384, kernel_size=3, padding=1),  # 8: conv3
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1),  # 10: conv4
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # 12: conv5
            nn.ReLU(inplace=True),  # 13
            nn.MaxPool2d(kernel_size=3, stride=2),  # 14: -> 6
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))
