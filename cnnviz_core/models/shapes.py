"""`ShapesCNN`: our own small CNN for the procedurally generated shape scenes.

Four conv stages (128 px input -> 64 -> 32 -> 16 -> 16, or -> 32 -> 32 with ``cam_stride=4``),
optionally a gated fusion of local and context features (``gated_fusion=True``), then global
average pooling and one linear layer, so that CAM (Zhou et al. 2016, https://arxiv.org/abs/1512.04150)
is exact at the last feature layer: ``logit_c = sum_k w_ck * mean(A_k)``.
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


class GatedFusion(nn.Module):
    """``local(L) * context(C)``: per-pixel features (a 1x1 conv + BN + ReLU on ``L``) multiplied,
    channel by channel, by context features (a 1x1 conv + BN + ReLU on ``C``). Both inputs and the
    output are ``(N, *, H, W)`` at the same resolution; the output is >= 0 with ``c_out`` channels.

    Why: a feature with a wide receptive field answers "is there a ring around here?" at every
    position near the ring, most strongly in its hole, where it sees the whole ring. Multiplying it
    by a feature that sees only a few pixels ("is this pixel part of an object?") keeps the class
    evidence, and so the CAM map, on the object. Adding the two instead does not: a trial that
    concatenated stage3's features to stage4's put even more rings' maxima in the hole.
    """

    def __init__(self, c_local: int, c_context: int, c_out: int) -> None:
        super().__init__()
        self.local = nn.Sequential(OrderedDict(conv=nn.Conv2d(c_local, c_out, 1, bias=False),
                                               bn=nn.BatchNorm2d(c_out), relu=nn.ReLU(inplace=True)))
        self.context = nn.Sequential(OrderedDict(conv=nn.Conv2d(c_context, c_out, 1),
                                                 bn=nn.BatchNorm2d(c_out), relu=nn.ReLU(inplace=True)))

    def forward(self, local: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.local(local) * self.context(context)


class ShapesCNN(nn.Module):
    """Input ``(N, 3, 128, 128)`` normalized RGB; output ``(N, num_classes)`` logits.

    Module paths: ``stage1``..``stage4`` (each a Sequential of ``convK``/``bnK``/``reluK``[/``pool``]),
    ``gap`` (global average pooling) and ``fc`` (the linear classifier). Without ``fusion``,
    ``stage4`` is :attr:`cam_layer`, the default layer for CAM methods: 16x16 for a 128 px input with ``cam_stride=8``; with ``cam_stride=4``
    stage3 does not pool and stage4's two convolutions are dilated by 2 and 3 instead (a la DeepLab),
    so stage4 is 32x32 (4 px cells) with a 66 px receptive field instead of 62.

    ``gated_fusion=True`` (needs ``cam_stride=4``) adds ``fusion``, a :class:`GatedFusion` of
    stage2's output (local: 10 px receptive field) and stage4's (context: 66 px),
    ``(N, widths[3], 32, 32)``; it feeds the pooling and is then the default CAM layer.
    """

    def __init__(self, num_classes: int = 6, widths: tuple[int, ...] = DEFAULT_WIDTHS, cam_stride: int = 8,
                 gated_fusion: bool = False) -> None:
        super().__init__()
        if cam_stride not in (4, 8):
            raise ValueError(f"cam_stride must be 4 or 8, got {cam_stride}")
        if gated_fusion and cam_stride != 4:
            raise ValueError("gated_fusion needs cam_stride=4 (stage2 and stage4 at the same resolution)")
        w1, w2, w3, w4 = widths
        self.stage1 = _stage(3, w1, convs=1, pool=True)
        self.stage2 = _stage(w1, w2, convs=1, pool=True)
        self.stage3 = _stage(w2, w3, convs=2, pool=cam_stride == 8)
        self.stage4 = _stage(w3, w4, convs=2, pool=False, dilations=(1, 1) if cam_stride == 8 else (2, 3))
        self.fusion = GatedFusion(w2, w4, w4) if gated_fusion else None
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w4, num_classes)

    @property
    def cam_layer(self) -> str:
        """Path of the layer that feeds the pooling (where CAM is exact): the default CAM layer."""
        return "stage4" if self.fusion is None else "fusion"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.stage2(self.stage1(x))
        x = self.stage4(self.stage3(local))
        if self.fusion is not None:
            x = self.fusion(local, x)
        return self.fc(torch.flatten(self.gap(x), 1))
