"""Training and evaluation of one run, with checkpoints that let it resume.

A run directory holds ``spec.json``, ``checkpoint.pt`` (model, optimiser, rule state,
epoch; loadable with ``torch.load(..., weights_only=True)``), ``metrics.json`` (the
per-epoch records so far) and, once the run has ended, ``status.json``
(``done`` or ``diverged`` with its message). An interrupted run restarts from its last
finished epoch; an ended one is skipped.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spikebench.datasets import DATASETS, SampleData, time_major_loader
from spikebench.datasets.base import IGNORE
from spikebench.errors import RunFileError, SpikebenchError
from spikebench.harness.spec import ExperimentSpec
from spikebench.io import atomic_write, write_json
from spikebench.learning_rules import LearningRule, evaluate_batch, make_rule
from spikebench.models import PRESETS, SpikingMLP
from spikebench.progress import progress_bar, progress_line

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


@dataclass
class RunResult:
    spec: ExperimentSpec
    status: str  # "done" | "diverged"
    metrics: list[dict]
    message: str = ""
    skipped: bool = False  # finished before; read from disk


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


def save_checkpoint(run_dir: Path, model, optimizer, rule: LearningRule, epoch: int,
                    spec: ExperimentSpec) -> None:
    state = {
        "spec": spec.to_dict(),
        "model_config": model.config(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rule": rule.name,
        "rule_config": rule.config(),
        "rule_state": rule.state_dict(),
        "epoch": epoch,
    }
    atomic_write(run_dir / CHECKPOINT, lambda tmp: torch.save(state, tmp))


CHECKPOINT_KEYS = ("spec", "model_config", "model", "optimizer", "rule", "rule_config",
                   "rule_state", "epoch")


def _unusable(path: Path, why: str) -> RunFileError:
    return RunFileError(
        f"{path}: {why}; delete it to retrain the run from epoch 1 (or delete the run folder "
        f"{path.parent}), then rerun")


def load_state_file(path: str | Path):
    """``torch.load`` of a file a run wrote (weights only, onto the CPU); a truncated,
    corrupt or foreign file is a ``RunFileError`` that names it and what to do (torch's
    own message, which suggests unsafe loading, is not relayed)."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises many types here (unpickling, zip, EOF)
        raise _unusable(path, f"not a readable spikebench checkpoint ({type(err).__name__}: "
                        "truncated, corrupt or written by another program)") from None


def load_checkpoint(path: str | Path) -> dict:
    """A run's checkpoint, checked to hold what spikebench saves (``load_state_file``)."""
    path = Path(path)
    ck = load_state_file(path)
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise _unusable(path, f"not a spikebench checkpoint (no {', '.join(missing)})")
    return ck


def restore(path: Path, what: str, module, state) -> None:
    """``module.load_state_dict(state)``; a state of another architecture is a
    ``RunFileError`` naming the checkpoint."""
    why = ""
    if isinstance(module, torch.nn.Module) and isinstance(state, dict):
        own = module.state_dict()
        extra, missing = sorted(set(state) - set(own)), sorted(set(own) - set(state))
        shapes = [k for k in set(own) & set(state) if getattr(state[k], "shape", None)
                  != own[k].shape]
        why = "; ".join(part for part in (
            f"unexpected {', '.join(extra[:4])}" if extra else "",
            f"missing {', '.join(missing[:4])}" if missing else "",
            f"other shapes for {', '.join(sorted(shapes)[:4])}" if shapes else "") if part)
    try:
        if why:
            raise ValueError(why)
        module.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
        first = why or (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise _unusable(path, f"its {what} does not fit this run's model (another "
                        f"architecture or version: {first[:200]})") from None


def read_json(path: Path, what: str):
    """A run's JSON file; garbage in it is a ``RunFileError`` naming the file."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunFileError(
            f"{path}: the run's {what} is not valid JSON ({err}); delete the run folder "
            f"{path.parent} to retrain the run, then rerun") from None


def load_trained(run_dir: str | Path) -> tuple[SpikingMLP, LearningRule, ExperimentSpec]:
    """Rebuild a trained model and its rule from a run directory, whatever the rule."""
    path = Path(run_dir) / CHECKPOINT
    ck = load_checkpoint(path)
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
    per frame or per sequence as ``data.task`` says; see ``SampleData``), and for data
    with a class folding (TIMIT 61 -> 39) ``acc_folded``."""
    model.eval()
    loss_sum, loss_n, hits, count, fold_hits, fold_count = 0.0, 0, 0, 0, 0, 0
    for x, y in time_major_loader(data, spec.batch_size):
        out = evaluate_batch(model, x, y, spec.burn_in, spec.loss)
        loss_sum, loss_n = loss_sum + out.loss * out.count, loss_n + out.count
        if data.task == "sequence":
            h, c = sequence_correct(out.outputs, y, spec.burn_in)
        else:
            h, c = out.correct, out.count
        hits, count = hits + h, count + c
        if data.fold is not None:
            pred = data.fold[out.outputs[spec.burn_in:].argmax(-1)]
            target = y[spec.burn_in :]
            keep = target != IGNORE
            target = data.fold[target.clamp(min=0)]
            keep &= target != IGNORE
            fold_hits += int(((pred == target) & keep).sum())
            fold_count += int(keep.sum())
    metrics = {"loss": loss_sum / max(loss_n, 1), "acc": hits / max(count, 1)}
    if data.fold is not None:
        metrics["acc_folded"] = fold_hits / max(fold_count, 1)
    return metrics


def sequence_correct(outputs: torch.Tensor, y: torch.Tensor, burn_in: int) -> tuple[int, int]:
    """One decision per sequence: argmax of its readout averaged over its labelled frames."""
    mask = (y[burn_in:] != IGNORE).unsqueeze(-1).to(outputs.dtype)
    logits = (outputs[burn_in:] * mask).sum(0) / mask.sum(0).clamp(min=1)
    labels = y.max(0).values  # every labelled frame carries the sequence's label
    return int((logits.argmax(-1) == labels).sum()), int(y.shape[1])


def train_run(
    spec: ExperimentSpec,
    run_dir: str | Path,
    train: SampleData,
    test_data: SampleData,
    progress: bool = True,
) -> RunResult:
    """Train ``spec`` in ``run_dir`` (resuming or skipping as the directory says)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    status_path, metrics_path = run_dir / "status.json", run_dir / "metrics.json"
    if status_path.is_file():
        st = read_json(status_path, "status")
        metrics = read_json(metrics_path, "metrics") if metrics_path.is_file() else []
        if not isinstance(st, dict) or st.get("status") not in ("done", "diverged") or \
                not isinstance(metrics, list):
            raise RunFileError(f"{status_path}: not a spikebench run status; delete the run "
                               f"folder {run_dir} to retrain the run, then rerun")
        return RunResult(spec, st["status"], metrics, st.get("message", ""), skipped=True)
    write_json(run_dir / "spec.json", spec.to_dict())

    seed_everything(spec.seed)
    model = build_model(spec)
    rule = make_rule(spec.rule, burn_in=spec.burn_in, loss=spec.loss, **spec.rule_options)
    rule.prepare(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr)
    start, metrics = 1, []
    ck_path = run_dir / CHECKPOINT
    if ck_path.is_file() and metrics_path.is_file():
        ck = load_checkpoint(ck_path)
        restore(ck_path, "model", model, ck["model"])
        restore(ck_path, "optimiser state", optimizer, ck["optimizer"])
        restore(ck_path, "rule state", rule, ck["rule_state"])
        start = int(ck["epoch"]) + 1
        saved = read_json(metrics_path, "metrics")
        metrics = [m for m in saved if m["epoch"] < start]
        log.info("%s: resuming after epoch %d", spec.run_id, start - 1)

    label = f"{spec.rule}/{spec.arch} s{spec.seed}"
    for epoch in range(start, spec.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        loss_sum, correct, count, n_batches = 0.0, 0, 0, 0
        # the shuffle depends on (seed, epoch) only, so a resumed run sees the same order
        loader = time_major_loader(train, spec.batch_size, shuffle=True,
                                   seed=spec.seed * 100_003 + epoch)
        bar = progress_bar(loader, f"{label} epoch {epoch}/{spec.epochs}", progress,
                           summary=False)  # the epoch's line follows below
        for x, y in bar:
            out = rule.backward(model, x, y, update=optimizer.step)
            if not math.isfinite(out.loss):
                message = (
                    f"training diverged: loss is {out.loss} at epoch {epoch}, batch "
                    f"{n_batches + 1} (lr={spec.lr}); results up to epoch {epoch - 1} are kept"
                )
                write_json(metrics_path, metrics)
                write_json(status_path, {"status": "diverged", "message": message})
                log.error("%s: %s", spec.run_id, message)
                return RunResult(spec, "diverged", metrics, message)
            if not out.updated:
                optimizer.step()
            loss_sum += out.loss
            correct += out.correct
            count += out.count
            n_batches += 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss_sum / n_batches:.3f}", acc=f"{correct / count:.3f}")
        train_time = time.perf_counter() - t0
        test = evaluate(model, test_data, spec)
        record = {
            "train_loss": loss_sum / max(n_batches, 1),
            "train_acc": correct / max(count, 1),
            **{f"test_{k}": v for k, v in test.items()},
            "epoch_time_s": train_time,
        }
        metrics += [{"epoch": epoch, "metric": k, "value": v} for k, v in record.items()]
        save_checkpoint(run_dir, model, optimizer, rule, epoch, spec)
        write_json(metrics_path, metrics)
        log.info("%s epoch %d: train acc %.3f, test acc %.3f (%.1fs)", spec.run_id, epoch,
                 record["train_acc"], record["test_acc"], train_time)
        progress_line(f"{label} epoch {epoch}/{spec.epochs}: train loss "
                      f"{record['train_loss']:.3f}, train acc {100 * record['train_acc']:.1f} %, "
                      f"test acc {100 * record['test_acc']:.1f} % ({train_time:.1f} s)", progress)
    write_json(status_path, {"status": "done"})
    return RunResult(spec, "done", metrics)
