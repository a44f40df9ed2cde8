"""Pictures of what the network sees (``spikebench data show``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spikebench.datasets.base import IGNORE, SampleData
from spikebench.io import save_figure, subplots


def _first_per_class(y: torch.Tensor, n: int) -> list[int]:
    labels = y if y.dim() == 1 else y.max(1).values
    picks: list[int] = []
    for c in torch.unique(labels).tolist():
        picks += torch.nonzero(labels == c).flatten()[:1].tolist()
        if len(picks) >= n:
            break
    return picks


def show_event_frames(data: SampleData, path: Path, n: int = 5, bins: int = 6) -> None:
    """Rows: samples; columns: time windows; red ON, blue OFF events."""
    steps = data.x.shape[1]
    edges = np.linspace(0, steps, bins + 1).astype(int)
    picks = _first_per_class(data.y, n)
    fig, axes = subplots(len(picks), bins, figsize=(1.6 * bins, 1.6 * len(picks)),
                             squeeze=False)
    for r, k in enumerate(picks):
        frames = data.x[k].float()  # [T, 2, H, W]
        for c in range(bins):
            win = frames[edges[c]: edges[c + 1]].sum(0)
            rgb = torch.stack([win[1], torch.zeros_like(win[0]), win[0]], -1)
            axes[r, c].imshow((rgb / rgb.max().clamp(min=1)).numpy())
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(f"steps {edges[c]}-{edges[c + 1] - 1}", fontsize=7)
        axes[r, 0].set_ylabel(f"label {int(data.y[k])}")
    fig.suptitle("event frames (red ON, blue OFF)")
    fig.tight_layout()
    save_figure(fig, path)


def show_features(data: SampleData, path: Path, n: int = 3, names: list[str] | None = None):
    """MFCC (+ deltas) over time with the frame labels written along the top."""
    picks = _first_per_class(data.y, n)
    fig, axes = subplots(len(picks), 1, figsize=(11, 2.6 * len(picks)), squeeze=False)
    for r, k in enumerate(picks):
        valid = data.y[k] != IGNORE
        length = int(valid.nonzero().max()) + 1
        ax = axes[r, 0]
        ax.imshow(data.x[k, :length].T.numpy(), aspect="auto", origin="lower", cmap="magma")
        ax.set_ylabel("feature (13 MFCC, Δ, ΔΔ)", fontsize=7)
        labels = data.y[k, :length].tolist()
        starts = [t for t in range(length) if t == 0 or labels[t] != labels[t - 1]]
        for t in starts:
            if labels[t] == IGNORE:
                continue
            text = names[labels[t]] if names else str(labels[t])
            ax.axvline(t, color="white", lw=0.4)
            ax.text(t + 0.5, 37.5, text, color="white", fontsize=6, va="top")
        ax.set_xlabel("frame (10 ms)")
    fig.tight_layout()
    save_figure(fig, path)


def show_images(data: SampleData, path: Path, n: int = 10, steps: int = 4) -> None:
    """Each class's first image and its first encoded time steps."""
    picks = _first_per_class(data.y, n)
    fig, axes = subplots(len(picks), steps + 1, figsize=(1.5 * (steps + 1), 1.5 * len(picks)),
                             squeeze=False)
    x = data.x[picks]
    encoded = data.encode(x) if data.encode is not None else None
    for r, k in enumerate(picks):
        img = x[r].float() / (255.0 if x.dtype == torch.uint8 else 1.0)
        axes[r, 0].imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray")
        axes[r, 0].set_ylabel(f"label {int(data.y[k])}", fontsize=7)
        for t in range(steps):
            if encoded is not None and t < encoded.shape[0]:
                frame = encoded[t, r].float()
                axes[r, t + 1].imshow(frame.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray")
            if r == 0:
                axes[r, t + 1].set_title(f"t={t}", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("image", fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def show_samples(data: SampleData, path: str | Path, phone_names: list[str] | None = None):
    """Pick the picture that fits the data: event frames, feature sequences or images."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if data.encode is not None:
        show_images(data, path)
    elif data.x.dim() == 5:
        show_event_frames(data, path)
    elif data.x.dim() == 3:
        show_features(data, path, names=phone_names)
    else:
        raise ValueError(f"no picture for samples of shape {tuple(data.x.shape[1:])}")
    return path
