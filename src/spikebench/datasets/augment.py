"""Training-time augmentation of image batches (the CIFAR family in the robust-SNN
references): a random crop of the image padded by ``PAD`` zero pixels on every side (so
the image shifts by up to ``PAD`` pixels) and a horizontal flip with probability 1/2,
drawn per sample from a generator, so that a run's batches are the same after a resume;
and cutout (DeVries & Taylor 2017; the robust-conversion reference trains its base ANN
with it): a ``length`` x ``length`` square of zeros centred on a uniformly drawn pixel,
clipped where it overhangs the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAD = 4


def draw(n: int, generator: torch.Generator, pad: int = PAD) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: the crop's offsets (dy, dx) in [0, 2 pad] [n, 2] and whether it flips [n]."""
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return offsets, flips


def crop_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
              pad: int = PAD) -> torch.Tensor:
    """Images [B, C, H, W] shifted by ``offsets`` - pad (zeros brought in) and flipped
    left-right where ``flips``."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = offsets[:, 0, None] + torch.arange(h)  # [B, H]
    cols = offsets[:, 1, None] + torch.arange(w)  # [B, W]
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    b = torch.arange(len(x))[:, None, None]
    out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None].to(x.device), cols[:, None, :].to(
        x.device)]
    return out.permute(0, 3, 1, 2).contiguous()


def cutout(x: torch.Tensor, centres: torch.Tensor, length: int) -> torch.Tensor:
    """Images [B, C, H, W] with the ``length``-pixel square around ``centres`` [B, 2]
    (row, column) set to 0 in every channel."""
    h, w = x.shape[-2:]
    lo = centres - length // 2  # [B, 2]; the square covers lo ... lo + length - 1
    rows = torch.arange(h)[None, :] - lo[:, :1]  # [B, H]
    cols = torch.arange(w)[None, :] - lo[:, 1:]
    inside = ((rows >= 0) & (rows < length))[:, :, None] & ((cols >= 0) & (cols < length))[
        :, None, :]
    return x * ~inside[:, None].to(x.device)


def augment(x: torch.Tensor, generator: torch.Generator, flip: bool = True,
            cut: int = 0) -> torch.Tensor:
    """``crop_flip`` (where ``flip``) and ``cutout`` of side ``cut`` (where > 0), each
    drawn from ``generator`` in that order."""
    if flip:
        x = crop_flip(x, *draw(len(x), generator))
    if cut:
        h, w = x.shape[-2:]
        centres = torch.stack([torch.randint(0, h, (len(x),), generator=generator),
                               torch.randint(0, w, (len(x),), generator=generator)], 1)
        x = cutout(x, centres, cut)
    return x
