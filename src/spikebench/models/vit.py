"""Vision Transformer (Dosovitskiy et al. 2021) with torchvision's module names
(``vit_b_16``'s ``state_dict`` keys and shapes), plus a small configuration that trains on a
CPU. torchvision itself is never imported.

``features(x)``: the class token after the final layer norm, [B, hidden_dim]; ``forward``
adds the default head ``heads.head``. Freezing: ``early_modules(k)`` is the patch
embedding (``conv_proj``, ``class_token``, ``encoder.pos_embedding``) and the first k blocks.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn


class MLPBlock(nn.Sequential):
    """Linear, GELU, Dropout, Linear, Dropout: keys ``mlp.0`` and ``mlp.3`` as torchvision."""

    def __init__(self, dim: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(mlp_dim, dim), nn.Dropout(dropout))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)


class EncoderBlock(nn.Module):
    def __init__(self, heads: int, dim: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + self.dropout(y)
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, seq_length: int, layers: int, heads: int, dim: int, mlp_dim: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(heads, dim, mlp_dim, dropout))
            for i in range(layers)))
        self.ln = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class VisionTransformer(nn.Module):
    def __init__(self, image_size: int, patch_size: int, layers: int, heads: int, dim: int,
                 mlp_dim: int, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size "
                             f"{patch_size}")
        self.image_size, self.patch_size, self.hidden_dim = image_size, patch_size, dim
        self.conv_proj = nn.Conv2d(in_channels, dim, patch_size, patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        seq = (image_size // patch_size) ** 2 + 1
        self.encoder = Encoder(seq, layers, heads, dim, mlp_dim)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(dim, num_classes)))
        self.feature_dim = dim
        fan_in = in_channels * patch_size**2
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)

    def early_modules(self, blocks: int) -> list:
        layers = list(self.encoder.layers)[:blocks]
        return [self.conv_proj, self.class_token, self.encoder.pos_embedding, *layers]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"the ViT expects {self.image_size}x{self.image_size} images, "
                             f"got {h}x{w}")
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return self.encoder(x)[:, 0]

    def head(self) -> nn.Module:
        return self.heads.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.features(x))


def vit_b_16(num_classes: int = 1000, image_size: int = 224) -> VisionTransformer:
    return VisionTransformer(image_size, 16, 12, 12, 768, 3072, num_classes)


def vit_small(num_classes: int = 10, image_size: int = 32) -> VisionTransformer:
    """A ViT that trains on a CPU: patches of 4, 6 blocks of width 128, 4 heads."""
    return VisionTransformer(image_size, 4, 6, 4, 128, 256, num_classes)
