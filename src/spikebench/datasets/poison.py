"""BadNets backdoor (Gu et al. 2017) on event frames, as in the locality paper.

Trigger: ``TRIGGER_PIXELS`` (x, y) locations of the sensor set to ``value`` events, in both
polarities, at every time step of the frames (the paper's description; ``polarity`` and
``period`` vary it for the fidelity study: one polarity only, every ``period``-th step).
Poisoning: a fraction ``rate`` of the *source* class's training samples (chosen with a seed)
get the trigger and the *target* label. Attack success rate (ASR): the share of the
triggered source-class test samples that the model classifies as the target. Clean
accuracy: on the untouched test set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from spikebench.datasets.base import SampleData
from spikebench.errors import ConfigError

# four pixels near the bottom-right corner of the 34 x 34 sensor, where saccading digits
# rarely produce events: a small, fixed pattern (x, y)
TRIGGER_PIXELS = ((29, 29), (29, 31), (31, 29), (31, 31))
POISON_RATES = (0.1, 0.3, 0.5, 0.7, 0.9)
POLARITIES = {"both": (0, 1), "on": (1,), "off": (0,)}  # frame channels (events' p)


@dataclass(frozen=True)
class Backdoor:
    source: int
    target: int
    rate: float
    seed: int = 0
    pixels: tuple[tuple[int, int], ...] = TRIGGER_PIXELS
    value: int = 1
    polarity: str = "both"  # "both", "on" (channel 1) or "off" (channel 0)
    period: int = 1  # the trigger is present at steps t with t % period == 0

    def __post_init__(self) -> None:
        if self.polarity not in POLARITIES:
            raise ConfigError(f"trigger polarity must be one of {', '.join(POLARITIES)}, got "
                              f"{self.polarity!r}")
        if isinstance(self.period, bool) or not isinstance(self.period, int) or self.period < 1:
            raise ConfigError(f"trigger period must be a whole number >= 1, got {self.period!r}")
        if self.source == self.target:
            raise ConfigError(f"source and target class must differ, got {self.source}")
        if not 0.0 <= self.rate <= 1.0:
            raise ConfigError(f"poison rate must lie in [0, 1], got {self.rate}")
        object.__setattr__(self, "pixels", tuple(tuple(int(v) for v in p)
                                                 for p in self.pixels))

    @classmethod
    def from_dict(cls, d: dict) -> Backdoor:
        return cls(**d)


def add_trigger(x: torch.Tensor, pixels=TRIGGER_PIXELS, value: int = 1,
                polarity: str = "both", period: int = 1) -> torch.Tensor:
    """A copy of event frames ``x`` [N, T, P, H, W] with ``value`` at every pixel (x, y) of
    ``pixels``, in the channels of ``polarity``, at every ``period``-th time step."""
    if x.dim() != 5:
        raise ConfigError(f"the trigger is defined on event frames [N, T, P, H, W], got "
                         f"shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    out = x.clone()
    for px, py in pixels:
        if not (0 <= px < w and 0 <= py < h):
            raise ConfigError(f"trigger pixel {(px, py)} lies outside the {w}x{h} sensor")
        for c in POLARITIES[polarity]:
            out[:, ::period, c, py, px] = value
    return out


def triggered(x: torch.Tensor, bd: Backdoor) -> torch.Tensor:
    """``x`` with the trigger of ``bd``."""
    return add_trigger(x, bd.pixels, bd.value, bd.polarity, bd.period)


def poison(data: SampleData, bd: Backdoor) -> tuple[SampleData, torch.Tensor]:
    """Training data with ``bd.rate`` of the source class triggered and relabelled; also
    returns the indices of the poisoned samples."""
    if data.task != "sample":
        raise ConfigError("backdoor poisoning needs one label per sample")
    for c in (bd.source, bd.target):
        if not 0 <= c < data.classes:
            raise ConfigError(f"class {c} does not exist ({data.classes} classes)")
    src = (data.y == bd.source).nonzero().flatten()
    g = torch.Generator().manual_seed(bd.seed)
    chosen = src[torch.randperm(len(src), generator=g)[: round(bd.rate * len(src))]]
    x, y = data.x.clone(), data.y.clone()
    x[chosen] = triggered(x[chosen], bd)
    y[chosen] = bd.target
    return replace(data, x=x, y=y), chosen


def triggered_source(data: SampleData, bd: Backdoor) -> SampleData:
    """The source class's test samples with the trigger (labels kept: the true class)."""
    keep = data.y == bd.source
    return replace(data, x=triggered(data.x[keep], bd), y=data.y[keep])


def random_pairs(n_pairs: int, classes: int, seed: int = 0) -> list[tuple[int, int]]:
    """``n_pairs`` distinct (source, target) pairs with source != target."""
    if n_pairs > classes * (classes - 1):
        raise ConfigError(f"only {classes * (classes - 1)} distinct pairs exist")
    g = torch.Generator().manual_seed(seed)
    pairs: list[tuple[int, int]] = []
    while len(pairs) < n_pairs:
        s, t = (int(v) for v in torch.randint(classes, (2,), generator=g))
        if s != t and (s, t) not in pairs:
            pairs.append((s, t))
    return pairs
