"""A configurable plain CNN: the axis of the complexity sweep and the default's learned network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from agefair.models.backbone import Backbone


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'group' or 'none', got {kind!r}")


class ConvBlock(nn.Module):
    """Two convolutions, optionally with a residual shortcut (ResNet's basic block)."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, kernel: int, norm: str, residual: bool
    ) -> None:
        super().__init__()
        pad = kernel // 2
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=norm == "none"),
            _norm(norm, c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, kernel, 1, pad, bias=norm == "none"),
            _norm(norm, c_out),
        )
        self.shortcut: nn.Module | None = None
        if residual:
            self.shortcut = (
                nn.Identity()
                if stride == 1 and c_in == c_out
                else nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride, bias=False), _norm(norm, c_out)
                )
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.act(y)


class PlainCNN(Backbone):
    """A configurable CNN: a strided stem, then ``depth`` stages that each halve the resolution.

    Args:
        depth: number of stages after the stem.
        width: channels of the first stage; each stage doubles them, up to ``max_width``.
        blocks: conv blocks per stage.
        kernel: convolution kernel size.
        norm: ``batch``, ``group`` or ``none``.
        residual: add ResNet-style shortcuts to the blocks.
        stem_stride: stride of the stem. Early downsampling matters more for CPU speed than the
            parameter count: full-resolution early layers dominate the time.
        stem_kernel: kernel of the stem (``None``: ``kernel``). A kernel wider than the stride
            lets a larger input pass through the stem without skipping pixels, e.g. 96 px with
            ``stem_stride=3, stem_kernel=5`` costs about what 64 px does with stride 2.
        stem_width: channels of the stem (``None``: ``width``). A narrower stem than the first
            stage keeps the full-resolution layer cheap when the first stage is wide.
        dropout: dropout on the pooled features.
        max_width: cap on the channels of the widest stage.
        widths: the channels of each stage, in place of ``depth``, ``width`` and the doubling;
            e.g. ``[48, 96, 256]`` widens only the last stage, whose 4 x 4 maps make its
            channels cheap in time though rich in parameters.
    """

    def __init__(
        self,
        depth: int = 4,
        width: int = 32,
        blocks: int = 1,
        kernel: int = 3,
        norm: str = "batch",
        residual: bool = True,
        stem_stride: int = 2,
        stem_kernel: int | None = None,
        stem_width: int | None = None,
        dropout: float = 0.0,
        max_width: int = 512,
        widths: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if widths is None:
            widths = [min(width * 2**stage, max_width) for stage in range(depth)]
        widths = list(widths)
        if not widths or min(widths) < 1 or blocks < 1:
            raise ValueError(
                f"need at least one stage, every width and blocks >= 1; got widths {widths}, "
                f"blocks {blocks}"
            )
        stem_kernel = kernel if stem_kernel is None else stem_kernel
        stem_width = widths[0] if stem_width is None else stem_width
        self.stem = nn.Sequential(
            nn.Conv2d(
                3, stem_width, stem_kernel, stem_stride, stem_kernel // 2, bias=norm == "none"
            ),
            _norm(norm, stem_width),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        c_in = stem_width
        for c_out in widths:
            for b in range(blocks):
                stride = 2 if b == 0 else 1
                layers.append(ConvBlock(c_in, c_out, stride, kernel, norm, residual))
                c_in = c_out
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.num_features = c_in
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(images))
        return self.dropout(self.pool(x).flatten(1))


# ---------------------------------------------------------------------------- timm
