"""Training and evaluation of one run, with checkpoints that let it resume.

A run directory holds ``spec.json``, ``checkpoint.pt`` (model, optimiser, rule state,
epoch; loadable with ``torch.load(..., weights_only=True)``), ``metrics.json`` (the
per-epoch records so far) and, once the run has ended, ``status.json``
(``done`` or ``diverged`` with its message). An interrupted run restarts from its last
finished epoch; an ended one is skipped.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch

from spikebench.datasets import DATASETS, SampleData, time_major_loader
from spikebench.datasets.base import IGNORE, check_fits
from spikebench.engine.executor import (
    CHECKPOINT,
    RunResult,
    Training,
    _unusable,
    fit,
    learner_step,
    load_checkpoint,
    restore,
)
from spikebench.engine.spec import ExperimentSpec
from spikebench.errors import ConfigError, SpikebenchError
from spikebench.learning_rules import LearningRule, evaluate_batch, make_rule
from spikebench.metrics.efficiency import EfficiencyCounter, static_metrics
from spikebench.models import PRESETS, SpikingMLP

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda[:N]`` or ``auto`` (CUDA where torch sees a GPU, else the CPU) as a
    torch device; a CUDA device this torch cannot use is a ConfigError naming it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r}: this torch ({torch.__version__}) sees no CUDA "
                              "GPU; use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} CUDA "
                              "device(s) here")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(spec: ExperimentSpec) -> SpikingMLP:
    info = DATASETS.get(spec.dataset)
    sizes = list(PRESETS[info.preset])
    if spec.hidden:
        sizes = [sizes[0], *spec.hidden, sizes[-1]]
    params = spec.neuron_params()
    return SpikingMLP(
        sizes,
        recurrent=spec.arch == "rec",
        neuron=spec.neuron,
        params=params,
        kappa=spec.kappa,
        weight_scale=spec.weight_scale,
        rec_scale=spec.rec_scale,
    )


SNN_CHECKPOINT_KEYS = ("spec", "model_config", "model", "optimizer", "rule", "rule_config",
                       "rule_state", "epoch")


def load_trained(run_dir: str | Path) -> tuple[SpikingMLP, LearningRule, ExperimentSpec]:
    """Rebuild a trained model and its rule from a run directory, whatever the rule."""
    path = Path(run_dir) / CHECKPOINT
    ck = load_checkpoint(path, SNN_CHECKPOINT_KEYS)
    try:
        model = SpikingMLP.from_config(ck["model_config"])
        rule = make_rule(ck["rule"], **ck["rule_config"])
        spec = ExperimentSpec.from_dict(ck["spec"])
    except (TypeError, KeyError, SpikebenchError) as err:
        raise _unusable(path, f"its configuration is not one this version builds ({err})"
                        ) from None
    restore(path, "model", model, ck["model"])
    rule.prepare(model)
    restore(path, "rule state", rule, ck["rule_state"])
    return model, rule, spec


@torch.no_grad()
def evaluate(model, data: SampleData, spec: ExperimentSpec) -> dict[str, float]:
    """Test metrics with the common decision rule: ``loss`` and ``acc`` (per sample,
    per frame or per sequence as ``data.task`` says; see ``SampleData``), for data
    with a class folding (TIMIT 61 -> 39) ``acc_folded``, and the efficiency metrics
    (``analysis.efficiency``: SynOps, activation sparsity, membrane updates, footprint,
    connection sparsity)."""
    model.eval()
    device = next(model.parameters()).device
    fold = data.fold.to(device) if data.fold is not None else None
    loss_sum, loss_n, hits, count, fold_hits, fold_count = 0.0, 0, 0, 0, 0, 0
    counter = EfficiencyCounter()
    for x, y in time_major_loader(data, spec.batch_size, sparse=True):
        x, y = x.to(device=device), y.to(device)
        out = evaluate_batch(model, x, y, spec.burn_in, spec.loss, counter)
        loss_sum, loss_n = loss_sum + out.loss * out.count, loss_n + out.count
        if data.task == "sequence":
            h, c = sequence_correct(out.outputs, y, spec.burn_in)
        else:
            h, c = out.correct, out.count
        hits, count = hits + h, count + c
        if fold is not None:
            pred = fold[out.outputs[spec.burn_in:].argmax(-1)]
            target = y[spec.burn_in :]
            keep = target != IGNORE
            target = fold[target.clamp(min=0)]
            keep &= target != IGNORE
            fold_hits += int(((pred == target) & keep).sum())
            fold_count += int(keep.sum())
    metrics = {"loss": loss_sum / max(loss_n, 1), "acc": hits / max(count, 1)}
    if data.fold is not None:
        metrics["acc_folded"] = fold_hits / max(fold_count, 1)
    return {**metrics, **counter.result(), **static_metrics(model)}


def sequence_correct(outputs: torch.Tensor, y: torch.Tensor, burn_in: int) -> tuple[int, int]:
    """One decision per sequence: argmax of its readout averaged over its labelled frames."""
    mask = (y[burn_in:] != IGNORE).unsqueeze(-1).to(outputs.dtype)
    logits = (outputs[burn_in:] * mask).sum(0) / mask.sum(0).clamp(min=1)
    labels = y.max(0).values  # every labelled frame carries the sequence's label
    return int((logits.argmax(-1) == labels).sum()), int(y.shape[1])


def check_batch_fits(spec: ExperimentSpec, model: SpikingMLP, train: SampleData) -> None:
    """Refuse a batch whose time-major tensors cannot fit in memory (a lower bound: the
    input and, per hidden neuron, its current, membrane and spikes over all T steps)."""
    steps = train.x.shape[1] if train.encode is None else spec.n_steps
    per_step = model.sizes[0] + 3 * sum(model.sizes[1:-1]) + model.sizes[-1]
    check_fits(4.0 * steps * min(spec.batch_size, len(train)) * per_step,
               f"a batch of {spec.batch_size} samples x {steps} steps",
               "choose fewer time steps (--steps) or a smaller --batch-size")


def train_run(
    spec: ExperimentSpec,
    run_dir: str | Path,
    train: SampleData,
    test_data: SampleData,
    progress: bool = True,
) -> RunResult:
    """Train ``spec`` in ``run_dir`` with the one training loop (``executor.fit``): Adam
    on the rule's gradients; the checkpoint also holds the model's configuration and the
    rule's state, so that ``load_trained`` rebuilds the model whatever its rule."""

    device = resolve_device(spec.device)

    def make() -> Training:
        seed_everything(spec.seed)
        model = build_model(spec).to(device)  # initialised on the CPU: same on every device
        if device.type == "cpu":
            check_batch_fits(spec, model, train)
        rule = make_rule(spec.rule, burn_in=spec.burn_in, loss=spec.loss, **spec.rule_options)
        rule.prepare(model)
        optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr)

        def batches(epoch: int):
            # the shuffle depends on (seed, epoch) only: a resumed run sees the same order
            return time_major_loader(train, spec.batch_size, shuffle=True,
                                     seed=spec.seed * 100_003 + epoch, sparse=True)

        return Training(
            model, optimizer, spec.epochs, batches,
            learner_step(rule, model, optimizer.step, device),
            evaluate=lambda: evaluate(model, test_data, spec),
            meta={"spec": spec.to_dict(), "model_config": model.config(), "rule": rule.name,
                  "rule_config": rule.config()},
            state=lambda: {"rule_state": rule.state_dict()},
            load_state=lambda ck: restore(Path(run_dir) / CHECKPOINT, "rule state", rule,
                                          ck["rule_state"]),
            label=f"{spec.rule}/{spec.arch} s{spec.seed}",
            note=f"lr={spec.lr}",
        )

    return fit(run_dir, spec, spec.to_dict(), make, progress)
