"""What every study shares: its context, its output, the per-model result cache and the
helpers that turn a trained run into the models the analyses take."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from spikebench.attacks.art import (
    ANNCounterpart,
    Classifier,
)
from spikebench.datasets import SampleData
from spikebench.datasets.encoders import Encoder
from spikebench.engine.executor import InProcessExecutor
from spikebench.engine.results import ID_COLUMNS
from spikebench.engine.spec import ExperimentSpec
from spikebench.engine.train import RunResult, load_trained
from spikebench.errors import ConfigError
from spikebench.io import digest, save_figure, write_json
from spikebench.report.markdown import RULE_ORDER, ordered

log = logging.getLogger(__name__)

RULE_COLORS = {"bptt": "tab:blue", "eprop": "tab:orange", "decolle": "tab:green",
               "conversion": "tab:gray"}


@dataclass
class TrainedModel:
    """One trained model of a run as every study sees it, whatever the suite kind: its
    identifying columns of the results schema (``engine.results.ID_COLUMNS`` without
    ``status``), the model (``models.contracts.Probed``, in eval mode), test samples
    batch-first ``x`` [N, ...] with labels ``y`` [N], and how a batch of them becomes the
    model's input (None: as it is) with the burn-in of its decision."""

    columns: dict
    model: Any
    x: torch.Tensor
    y: torch.Tensor
    inputs: Callable[[torch.Tensor], Any] | None = None
    burn_in: int = 0

    def model_input(self, x: torch.Tensor):
        return self.inputs(x) if self.inputs is not None else x


# (spec, run_dir, n test samples or None) -> the run's trained models; a suite kind's
# ``trained``, a module-level function or a picklable kind's method (it runs in tasks)
TrainedLoader = Callable[[Any, Path, "int | None"], "list[TrainedModel]"]


@dataclass
class StudyContext:
    suite: str
    out_dir: Path
    runs: list[tuple[RunResult, Path]]  # every run of the suite with its folder
    data: Callable[[ExperimentSpec], tuple[SampleData, SampleData]]
    paper: bool = False  # the paper's settings instead of this machine's defaults
    n_eval: int | None = None  # test samples analysed (None: the study's default)
    progress: bool = True
    runs_dir: Path | None = None  # where runs a study needs (e.g. the conversion ANN) go
    executor: Any = None  # runs the per-model analyses (None: in this process)
    trained: TrainedLoader | None = None  # the kind's loader of a run's trained models

    def __post_init__(self) -> None:
        if self.executor is None:
            self.executor = InProcessExecutor()

    @property
    def done(self) -> list[tuple[RunResult, Path]]:
        return [(r, d) for r, d in self.runs if r.status == "done"]

    @property
    def run_dirs(self) -> dict[str, Path]:
        return {r.spec.run_id: d for r, d in self.runs}


@dataclass
class StudyOutput:
    sections: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


# -- shared helpers -------------------------------------------------------------------
_MISSING = object()


def _cache_path(run_dir: Path, name: str, params: dict, version: int) -> Path:
    key = params if version == 1 else {**params, "_version": version}
    return Path(run_dir) / "analysis" / f"{name}-{digest(key)}.json"


def _read_cached(path: Path):
    if path.is_file():
        try:
            return json.loads(path.read_text())["result"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            log.warning("cached analysis %s is unreadable (%s); computing it again", path, err)
    return _MISSING


def cached(run_dir: Path, name: str, params: dict, compute: Callable[[], object],
           version: int = 1):
    """``compute()``'s JSON result, stored once per (run, study, version, parameters); a
    study bumps ``version`` when its computation changes, so older results are not reused
    (version 1 keeps the keys of spikebench 0.1)."""
    path = _cache_path(run_dir, name, params, version)
    result = _read_cached(path)
    if result is _MISSING:
        result = compute()
        write_json(path, {"params": params, "result": result})
    return result


def _cached_call(name: str, fn: Callable, spec, run_dir: Path, params: dict, version: int):
    return cached(run_dir, name, params, lambda: fn(spec, run_dir, params), version)


def per_model(ctx: StudyContext, name: str, fn: Callable[[Any, Path, dict], object],
              jobs: list[tuple[Any, Path, dict]], version: int = 1) -> list:
    """``fn(spec, run_dir, params)`` of every job, each cached in its run folder
    (``cached``); those not cached yet run as tasks of the suite's executor (so, on Ray, in
    parallel on the cluster). ``fn`` must be a module-level function that loads what it
    needs by the spec (``spikebench.engine.data.spec_data``, ``load_model``)."""
    out: list = [_read_cached(_cache_path(d, name, p, version)) for _, d, p in jobs]
    todo = [k for k, v in enumerate(out) if v is _MISSING]
    computed = ctx.executor.map(
        _cached_call, [(name, fn, *jobs[k], version) for k in todo], name, ctx.progress)
    for k, value in zip(todo, computed, strict=True):
        out[k] = value
    return out


def run_columns(spec: ExperimentSpec) -> dict:
    return {"run_id": spec.run_id, "dataset": spec.dataset, "rule": spec.rule,
            "arch": spec.arch, "neuron": spec.neuron, "seed": spec.seed}


def eval_samples(data: SampleData, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test samples (all with None), as float batch-first tensors."""
    if data.task != "sample":
        raise ConfigError("this study needs one label per sample (N-MNIST, images); "
                         f"the data's task is {data.task!r}")
    data = data.subset(n)
    return data.x.float(), data.y


def eval_count(data: SampleData, n: int | None) -> int:
    """How many samples ``eval_samples(data, n)`` gives (without converting them)."""
    if data.task != "sample":
        eval_samples(data, n)  # the error that names the task
    return len(data) if n is None else min(n, len(data))


def valid_range(data: SampleData) -> tuple[float, float]:
    """Images [0, 1]; event frames [0, the largest per-bin count in the data]."""
    return (0.0, 1.0) if data.encode is not None else (0.0, float(data.x.max()))


def classifier(model, spec: ExperimentSpec, data: SampleData, eot: int = 8) -> Classifier:
    stochastic = data.encode is not None and getattr(data.encode, "name", "") == "bernoulli"
    return Classifier(model, spec.burn_in, data.encode, eot if stochastic else 1)


def counterpart(model, spec: ExperimentSpec, data: SampleData,
                max_rate: float | None = None) -> ANNCounterpart:
    # static images: the counterpart sees the intensities at every step (the expectation
    # of the rate code), event frames: the frames themselves
    encode = Encoder("direct", spec.n_steps) if data.encode is not None else None
    return ANNCounterpart(model, spec.burn_in, encode, max_rate)




def _ordered_rules(values) -> list[str]:
    return ordered(values, RULE_ORDER)


def _pct(v: float) -> str:
    return f"{100 * v:.2f}" if v == v else "–"


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    save_figure(fig, path)





def load_model(run_dir: Path, train: bool = False):
    """The trained model of a run folder (whatever rule trained it), in eval mode unless
    ``train``."""
    model, _, _ = load_trained(run_dir)
    return model if train else model.eval()


def models_of(ctx: StudyContext, spec, run_dir: Path, n: int | None) -> list[TrainedModel]:
    """The trained models of one finished run of the suite (``ctx.trained``)."""
    if ctx.trained is None:
        raise ConfigError(f"suite {ctx.suite!r} does not say how to load its trained models "
                          "(its kind has no ``trained``), so model studies cannot run on it")
    return ctx.trained(spec, run_dir, n)


def schema_columns(suite: str, columns: dict) -> dict:
    """A study table's identifying columns: the results schema's, in its order."""
    return {"suite": suite, **{k: columns[k] for k in ID_COLUMNS if k not in ("suite",
                                                                          "status")}}


def variant(columns: dict) -> str:
    """How a model is told apart from the others of its architecture in tables and plots:
    its method, with the stage where a run has several (``conversion/ann``)."""
    stage = columns["stage"]
    return columns["method"] if stage in ("train", columns["method"]) else \
        f"{columns['method']}/{stage}"


def layer_order(values) -> list[str]:
    """Layer names once each in running order (as the models probe them), the readout
    ``out`` last."""
    layers = list(dict.fromkeys(values))
    return [la for la in layers if la != "out"] + (["out"] if "out" in layers else [])
