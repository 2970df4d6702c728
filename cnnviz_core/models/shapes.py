"""`ShapesCNN`: our own small CNN for the procedurally generated shape scenes.

Four conv stages (128 px input -> 64 -> 32 -> 16 -> 16, or -> 32 -> 32 with ``cam_stride=4``), then
global average pooling and one linear layer, so that CAM (Zhou et al. 2016, https://arxiv.org/abs/1512.04150) is exact for it:
``logit_c = sum_k w_ck * mean(A_k)``.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

DEFAULT_WIDTHS: tuple[int, int, int, int] = (24, 48, 96, 128)


def _stage(c_in: int, c_out: int, convs: int, pool: bool, dilations: tuple[int, ...] = (1, 1)) -> nn.Sequential:
    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    for i in range(1, convs + 1):
        d = dilations[i - 1]
        layers[f"conv{i}"] = nn.Conv2d(c_in if i == 1 else c_out, c_out, 3, padding=d, dilation=d, bias=False)
        layers[f"bn{i}"] = nn.BatchNorm2d(c_out)
        layers[f"relu{i}"] = nn.ReLU(inplace=True)
    if pool:
        layers["pool"] = nn.MaxPool2d(2)
    return nn.Sequential(layers)


class ShapesCNN(nn.Module):
    """Input ``(N, 3, 128, 128)`` normalized RGB; output ``(N, num_classes)`` logits.

    Module paths: ``stage1``..``stage4`` (each a Sequential of ``convK``/``bnK``/``reluK``[/``pool``]),
    ``gap`` (global average pooling) and ``fc`` (the linear classifier). ``stage4`` is the default
    layer for CAM methods: 16x16 for a 128 px input with ``cam_stride=8``; with ``cam_stride=4``
    stage3 does not pool and stage4's two convolutions are dilated by 2 and 3 instead (a la DeepLab),
    so stage4 is 32x32 (4 px cells) with a 66 px receptive field instead of 62.
    """

    def __init__(self, num_classes: int = 6, widths: tuple[int, ...] = DEFAULT_WIDTHS, cam_stride: int = 8) -> None:
        super().__init__()
        if cam_stride not in (4, 8):
            raise ValueError(f"cam_stride must be 4 or 8, got {cam_stride}")
        w1, w2, w3, w4 = widths
        self.stage1 = _stage(3, w1, convs=1, pool=True)
        self.stage2 = _stage(w1, w2, convs=1, pool=True)
        self.stage3 = _stage(w2, w3, convs=2, pool=cam_stride == 8)
        self.stage4 = _stage(w3, w4, convs=2, pool=False, dilations=(1, 1) if cam_stride == 8 else (2, 3))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        return self.fc(torch.flatten(self.gap(x), 1))
