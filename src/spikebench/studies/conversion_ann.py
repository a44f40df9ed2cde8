"""The ANN of the ANN-SNN conversion baseline as a run of the one executor.

The ReLU network (``training.conversion.ReLUMLP``) is trained on the time-averaged input
(Adam, cross-entropy: the ``Objective()`` procedure) by ``executor.fit`` in its own run
folder, so that it is trained once, checkpointed and reused like every other run;
``training.conversion.convert`` then turns it into a spiking MLP. Its spec covers its
topology, its training and the data it sees (the SNN runs' data identity, steps and
training subset).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from spikebench.engine.executor import (
    CHECKPOINT,
    RunResult,
    Training,
    fit,
    learner_step,
    load_checkpoint,
    restore,
)
from spikebench.engine.spec import check_field_types
from spikebench.io import digest
from spikebench.training.conversion import ReLUMLP
from spikebench.training.robust import Objective


@dataclass(frozen=True)
class ConversionSpec:
    sizes: tuple[int, ...]
    seed: int = 0
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 64
    data: dict = field(default_factory=dict)  # what defines the inputs (see data_identity)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))
        check_field_types(self)

    @property
    def run_id(self) -> str:
        return f"conversion-ann-s{self.seed}-{digest(asdict(self))}"


def data_identity(spec) -> dict:
    """The fields of an experiment spec that define the inputs an ANN trained beside it
    sees (data set, folder, fingerprint, binning, training subset)."""
    out = {k: getattr(spec, k) for k in ("dataset", "data_dir", "data_fingerprint",
                                         "n_steps", "dt_ms", "n_train")}
    if spec.frames != "binary":  # added later: the default keeps the ids of saved ANNs
        out["frames"] = spec.frames
    return out


def train_conversion_ann(spec: ConversionSpec, run_dir: str | Path, x: torch.Tensor,
                         y: torch.Tensor, progress: bool = True) -> tuple[RunResult, ReLUMLP]:
    """Train (or reuse) the ReLU network on time-averaged inputs ``x`` [N, features]."""
    holder: dict[str, ReLUMLP] = {}

    def make() -> Training:
        torch.manual_seed(spec.seed)
        ann = ReLUMLP(spec.sizes)
        holder["ann"] = ann
        opt = torch.optim.Adam(ann.parameters(), lr=spec.lr)

        def batches(epoch: int):
            g = torch.Generator().manual_seed(spec.seed * 1000 + epoch)
            return ((x[idx], y[idx]) for idx in torch.randperm(len(x), generator=g)
                    .split(spec.batch_size))

        return Training(ann, opt, spec.epochs, batches,
                        learner_step(Objective(), ann, opt.step), label=f"conversion ANN "
                        f"s{spec.seed}", meta={"sizes": list(spec.sizes)})

    result = fit(run_dir, spec, asdict(spec), make, progress)
    ann = holder.get("ann")
    if ann is None or result.skipped:  # trained before: read it back
        ann = ReLUMLP(spec.sizes)
        path = Path(run_dir) / CHECKPOINT
        restore(path, "ANN", ann, load_checkpoint(path)["model"])
    return result, ann.eval()
