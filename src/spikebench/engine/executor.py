"""The one executor and its one training loop.

Every run, whatever trains (an SNN by a learning rule, a hybrid transfer stage, the ANN of
the conversion baseline), is a spec with a stable id and a run folder, and ``fit`` trains
it: it skips an ended run, resumes an interrupted one from its last finished epoch,
checkpoints after every epoch, records per-epoch metrics and ends the run as ``done`` or
``diverged`` (a non-finite loss is final and keeps the epochs so far). What differs
between kinds of runs is given as hooks (``Training``): the model and optimiser, the
batches of an epoch, the step on one batch, the evaluation and the extra state saved with
the checkpoint.

A run folder holds ``spec.json``, ``checkpoint.pt`` (``torch.load(..., weights_only=True)``
loads it), ``metrics.json`` (records ``{epoch, metric, value}``) and, once ended,
``status.json``. While a process trains a run it holds the folder's ``lock`` (an advisory
``flock``, released by the kernel when the process dies), so that two processes never train
one run at once: the second waits, then finds the run ended or resumes it.

An executor runs a suite's runs (``run``) and a study's per-model analyses (``map``).
``InProcessExecutor`` runs them one after the other in this process; the Ray executor
(``spikebench.engine.ray_executor``) runs each as a Ray task. Executors differ only in where
a task runs, never in what it writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spikebench.errors import RunFileError
from spikebench.io import atomic_write, write_json
from spikebench.progress import progress_bar, progress_line

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
STATUS_VERSION = 2  # status.json written by this executor carries {"version": 2}
ENDED = ("done", "diverged")


@dataclass
class RunResult:
    spec: Any  # the run's spec (ExperimentSpec, HybridSpec, ...)
    status: str  # "done" | "diverged"
    metrics: list[dict]  # {epoch, metric, value}
    message: str = ""
    skipped: bool = False  # ended before; read from disk
    run_dir: Path | None = None
    sizes: dict[str, int] = field(default_factory=dict)  # samples trained / tested on
    details: dict = field(default_factory=dict)  # what a kind of run adds (hybrid stages)


@dataclass
class StepResult:
    """What one training step reports to the loop."""

    loss: float
    correct: int = 0
    count: int = 0
    updated: bool = False  # the step already applied the optimiser's update


@dataclass
class Training:
    """The hooks of one run (see the module docstring)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    epochs: int
    batches: Callable[[int], Iterable]  # epoch (1-based) -> the epoch's batches
    step: Callable[[Any], StepResult]  # one batch: gradients (and maybe the update)
    evaluate: Callable[[], dict[str, float]] | None = None  # -> test metrics (no prefix)
    scheduler: Any = None  # stepped once per epoch
    frozen: Sequence[torch.nn.Module] = ()  # kept in eval mode while training
    meta: dict = field(default_factory=dict)  # saved with the checkpoint as is
    state: Callable[[], dict] | None = None  # extra state saved with the checkpoint
    load_state: Callable[[dict], None] | None = None  # ... and restored on resume
    label: str = "run"  # progress label
    note: str = ""  # said with a divergence (e.g. the learning rate)


def learner_step(learner, model: torch.nn.Module, update: Callable[[], None],
                 device: torch.device | None = None) -> Callable[[Any], StepResult]:
    """``Training.step`` of every run: the batch (x, y), moved to ``device`` where given,
    through ``learner.backward(model, x, y, update=update)`` (a ``learning_rules.Learner``:
    a learning rule or a training procedure); ``update`` is the optimiser's step."""
    opt = getattr(update, "__self__", None)
    if isinstance(opt, torch.optim.Optimizer) and getattr(update, "__name__", "") == "step":
        # looked up at each call: an LR scheduler made after this step wraps optimizer.step
        # to count its calls, and a captured bound method would bypass that (torch then
        # warns "lr_scheduler.step() before optimizer.step()" although the order is right)
        def update() -> None:
            opt.step()

    def step(batch) -> StepResult:
        x, y = batch
        if device is not None:
            x, y = x.to(device=device), y.to(device)
        out = learner.backward(model, x, y, update=update)
        return StepResult(out.loss, out.correct, out.count, out.updated)

    return step


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


def load_checkpoint(path: str | Path, keys: Sequence[str] = ("model", "optimizer", "epoch")
                    ) -> dict:
    """A run's checkpoint, checked to hold ``keys`` (``load_state_file``)."""
    path = Path(path)
    ck = load_state_file(path)
    missing = [k for k in keys if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise _unusable(path, f"not a spikebench checkpoint (no {', '.join(missing)})")
    return ck


def weights_digest(model: torch.nn.Module) -> str:
    """A digest of a model's state (names, shapes and bytes of every tensor)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]

def restore(path: Path, what: str, module, state) -> None:
    """``module.load_state_dict(state)``; a state of another architecture is a
    ``RunFileError`` naming the checkpoint and the keys that differ."""
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


def load_trained(path: Path, what: str, model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with the weights of the checkpoint at ``path`` (``restore``), in eval
    mode."""
    restore(path, what, model, load_checkpoint(path)["model"])
    return model.eval()


def read_json(path: Path, what: str):
    """A run's JSON file; garbage in it is a ``RunFileError`` naming the file."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunFileError(
            f"{path}: the run's {what} is not valid JSON ({err}); delete the run folder "
            f"{path.parent} to retrain the run, then rerun") from None


def ended(run_dir: Path) -> tuple[str, str, list[dict]] | None:
    """(status, message, metrics records) of an ended run folder, None if it has not
    ended. A run that says it is done but has lost its metrics is a ``RunFileError``
    (never "done with nothing")."""
    path = Path(run_dir) / "status.json"
    if not path.is_file():
        return None
    st = read_json(path, "status")
    if not isinstance(st, dict) or st.get("status") not in ENDED:
        raise RunFileError(f"{path}: not a spikebench run status; delete the run folder "
                           f"{run_dir} to retrain the run, then rerun")
    records = read_metrics(run_dir)
    epochs = st.get("epochs")  # absent in status files written before 2026-12-04
    if st["status"] == "done" and (epochs is None or epochs) and not records:
        metrics = Path(run_dir) / "metrics.json"
        raise RunFileError(
            f"{metrics}: {'empty' if metrics.is_file() else 'missing'}, but {path} says the "
            f"run is done; its results are lost: delete the run folder {run_dir} to retrain "
            "the run, then rerun")
    return st["status"], st.get("message", ""), records


def _is_record(m) -> bool:
    """One metrics record: {epoch: int >= 1, metric: str, value: a number}."""
    return (isinstance(m, dict) and {"epoch", "metric", "value"} <= set(m)
            and type(m["epoch"]) is int and m["epoch"] >= 1 and isinstance(m["metric"], str)
            and isinstance(m["value"], (int, float)) and not isinstance(m["value"], bool))


def read_metrics(run_dir: Path) -> list[dict]:
    """A run's metrics records (``[]`` before its first epoch); a file that is not a list
    of records is a ``RunFileError`` naming the first bad record."""
    path = Path(run_dir) / "metrics.json"
    metrics = read_json(path, "metrics") if path.is_file() else []
    bad = (metrics if not isinstance(metrics, list) else
           next((m for m in metrics if not _is_record(m)), None))
    if bad is not None:
        raise RunFileError(f"{path}: not a spikebench metrics record ({str(bad)[:80]}: wants "
                           "{epoch: int, metric: name, value: number}); delete the run folder "
                           f"{run_dir} to retrain the run, then rerun")
    return metrics


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold ``run_dir/lock`` while this process trains the run; it names the holder
    (``pid host``). A lock held by another process is waited for."""
    path = Path(run_dir) / "lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            log.warning("%s: being trained by %s; waiting for it", run_dir.name, holder)
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()} {socket.gethostname()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def fit(run_dir: str | Path, spec, spec_dict: dict, make: Callable[[], Training],
        progress: bool = True) -> RunResult:
    """Train one run in ``run_dir`` (skipping, resuming or starting it as the folder says).
    ``make()`` builds the run's ``Training`` (seeded by the caller); it is only called when
    there is something to train."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir):
        return _fit(run_dir, spec, spec_dict, make, progress)


def _fit(run_dir: Path, spec, spec_dict: dict, make: Callable[[], Training],
         progress: bool) -> RunResult:
    status_path = run_dir / "status.json"
    done = ended(run_dir)
    if done is not None:
        status, message, records = done
        return RunResult(spec, status, records, message, skipped=True, run_dir=run_dir)
    write_json(run_dir / "spec.json", spec_dict)
    tr = make()
    ck_path, metrics_path = run_dir / CHECKPOINT, run_dir / "metrics.json"
    start, metrics = 1, []
    if ck_path.is_file() and metrics_path.is_file():
        ck = load_checkpoint(ck_path)
        restore(ck_path, "model", tr.model, ck["model"])
        restore(ck_path, "optimiser state", tr.optimizer, ck["optimizer"])
        if tr.scheduler is not None and "scheduler" in ck:
            restore(ck_path, "schedule", tr.scheduler, ck["scheduler"])
        if tr.load_state is not None:
            try:
                tr.load_state(ck)
            except (KeyError, ValueError, RuntimeError, TypeError) as err:
                raise _unusable(ck_path, f"its state does not fit this run ({err})") from None
        start = int(ck["epoch"]) + 1
        metrics = [m for m in read_metrics(run_dir) if m["epoch"] < start]
        log.info("%s: resuming after epoch %d", run_dir.name, start - 1)
    # the epochs after which it was interrupted and resumed (status.json says so)
    resumed = _resumed(run_dir) + [start - 1] if start > 1 else []

    for epoch in range(start, tr.epochs + 1):
        tr.model.train()
        for m in tr.frozen:
            m.eval()
        t0 = time.perf_counter()
        loss_sum, correct, count, n_batches = 0.0, 0, 0, 0
        bar = progress_bar(tr.batches(epoch), f"{tr.label} epoch {epoch}/{tr.epochs}",
                           progress, summary=False)  # the epoch's line follows below
        for batch in bar:
            tr.optimizer.zero_grad(set_to_none=True)
            out = tr.step(batch)
            if not math.isfinite(out.loss):
                message = (f"training diverged: loss is {out.loss} at epoch {epoch}, batch "
                           f"{n_batches + 1}{f' ({tr.note})' if tr.note else ''}; results up "
                           f"to epoch {epoch - 1} are kept")
                write_json(metrics_path, metrics)
                write_json(status_path, {"status": "diverged", "message": message,
                                         "version": STATUS_VERSION, "resumed_after": resumed})
                log.error("%s: %s", run_dir.name, message)
                return RunResult(spec, "diverged", metrics, message, run_dir=run_dir)
            if not out.updated:
                tr.optimizer.step()
            loss_sum += out.loss
            correct += out.correct
            count += out.count
            n_batches += 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss_sum / n_batches:.3f}")
        if tr.scheduler is not None:
            tr.scheduler.step()
        train_time = time.perf_counter() - t0
        record: dict[str, float] = {"train_loss": loss_sum / max(n_batches, 1)}
        if count:
            record["train_acc"] = correct / count
        if tr.evaluate is not None:
            record.update({f"test_{k}": v for k, v in tr.evaluate().items()})
        record["epoch_time_s"] = train_time
        metrics += [{"epoch": epoch, "metric": k, "value": v} for k, v in record.items()]
        state = {"model": tr.model.state_dict(), "optimizer": tr.optimizer.state_dict(),
                 "epoch": epoch, **tr.meta, **(tr.state() if tr.state else {})}
        if tr.scheduler is not None:
            state["scheduler"] = tr.scheduler.state_dict()
        # the records first: a run killed between the two writes retrains this epoch
        # (the checkpoint says the one before) instead of losing its records
        write_json(metrics_path, metrics)
        atomic_write(ck_path, lambda tmp, state=state: torch.save(state, tmp))
        if resumed:
            write_json(run_dir / "resumed.json", resumed)
        summary = ", ".join(
            f"{k.replace('_', ' ')} {100 * v:.1f} %" if "acc" in k else
            f"{k.replace('_', ' ')} {v:.3f}" for k, v in record.items()
            if "loss" in k or "acc" in k)  # the efficiency metrics go to results.csv only
        log.info("%s epoch %d: %s (%.1fs)", run_dir.name, epoch, summary, train_time)
        progress_line(f"{tr.label} epoch {epoch}/{tr.epochs}: {summary} ({train_time:.1f} s)",
                      progress)
    write_json(status_path, {"status": "done", "version": STATUS_VERSION,
                             "resumed_after": resumed, "epochs": tr.epochs})
    return RunResult(spec, "done", metrics, run_dir=run_dir)


def _resumed(run_dir: Path) -> list[int]:
    path = run_dir / "resumed.json"
    value = read_json(path, "resume record") if path.is_file() else []
    return [int(v) for v in value] if isinstance(value, list) else []


@contextlib.contextmanager
def torch_threads(n: int | None):
    """``torch.set_num_threads(n)`` for the block (None: leave it as it is)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class InProcessExecutor:
    """Runs a suite's runs and a study's analyses one after the other in this process,
    with ``cpus_per_run`` torch threads (None: torch's default, all cores)."""

    name = "in-process"

    def __init__(self, cpus_per_run: int | None = None) -> None:
        self.cpus_per_run = cpus_per_run

    def run(self, jobs: Sequence[Any], task: Callable[[int, Any], RunResult],
            after_each: Callable[[int, RunResult], None] | None = None) -> list[RunResult]:
        """``task(i, job)`` for each job (i from 1); ``after_each(i, result)`` as each ends."""
        results = []
        for i, job in enumerate(jobs, 1):
            with torch_threads(self.cpus_per_run):
                result = task(i, job)
            results.append(result)
            if after_each is not None:
                after_each(i, result)
        return results

    def map(self, fn: Callable[..., Any], items: Sequence[tuple], label: str = "",
            progress: bool = True) -> list:
        """``fn(*item)`` for each item, in order."""
        out = []
        for item in progress_bar(items, label, progress and bool(label)):
            with torch_threads(self.cpus_per_run):
                out.append(fn(*item))
        return out

    def prepare(self, runs_dir: Path) -> None:
        """Nothing to check: this process writes the runs folder itself."""

    def close(self) -> None:
        pass
