"""Suites: a named list of experiment specs plus the report they produce.

``run_suite`` returns the tidy results table (pandas) and writes ``results.csv`` (after
every run, atomically) and ``report.md`` + PNGs into the output folder. Rerunning a suite
skips finished runs and resumes interrupted ones from their last epoch.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from spikebench.datasets import DATASETS, SampleData
from spikebench.harness.report import write_report
from spikebench.harness.results import tidy_rows, to_frame, write_atomic
from spikebench.harness.spec import ARCHS, ExperimentSpec
from spikebench.harness.train import RunResult, train_run
from spikebench.learning_rules import RULES
from spikebench.registry import Registry

log = logging.getLogger(__name__)

LOCALITY_RULES = ("bptt", "eprop", "decolle")


@dataclass
class SuiteOptions:
    """What the command line may change in a suite's specs (None = the suite's default)."""

    data_dir: str | None = None
    dataset: str | None = None
    epochs: int | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    n_train: int | None = None
    n_test: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    n_steps: int | None = None
    rules: list[str] | None = None
    archs: list[str] | None = None
    rule_options: dict | None = None
    progress: bool = True

    def apply(self, spec: ExperimentSpec) -> ExperimentSpec:
        changes = {k: getattr(self, k) for k in
                   ("epochs", "n_train", "n_test", "batch_size", "lr", "n_steps")
                   if getattr(self, k) is not None}
        if self.data_dir is not None:
            changes["data_dir"] = str(self.data_dir)
        if self.rule_options:  # options a rule does not take are left out for that rule
            accepted = inspect.signature(RULES.get(spec.rule)).parameters
            changes["rule_options"] = {k: v for k, v in self.rule_options.items()
                                       if k in accepted}
        return replace(spec, **changes)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    build: Callable[[SuiteOptions], tuple[list[ExperimentSpec], list[str]]]


def locality_grid(name: str, embedded: str | None, real: str, rules=LOCALITY_RULES,
                  **defaults):
    """3 rules x FF/REC x seeds on ``embedded`` data, or ``real`` data with --data-dir (or
    always, where there is no embedded data); ``defaults`` are spec fields of this suite
    (the command line overrides them)."""

    def build(opts: SuiteOptions) -> tuple[list[ExperimentSpec], list[str]]:
        dataset = opts.dataset or (real if opts.data_dir or embedded is None else embedded)
        wanted = opts.rules or list(rules)
        notes = []
        missing = [r for r in wanted if r not in RULES]
        if missing:
            notes.append(f"rules not available in this version, not run: {', '.join(missing)}")
        archs = opts.archs or list(ARCHS)
        specs = [
            opts.apply(ExperimentSpec(dataset=dataset, rule=r, arch=a, seed=s, suite=name,
                                      **defaults))
            for r in wanted if r in RULES
            for a in archs
            for s in opts.seeds
        ]
        return specs, notes

    return build


SUITES: Registry[Suite] = Registry("suite")
SUITES.register(
    "default",
    Suite(
        "default",
        "FF and REC LIF networks (2312-120-84-10) trained by BPTT, e-prop and DECOLLE on "
        "the embedded N-MNIST-style data (nmnist-sim), 5 epochs: the quick look.",
        locality_grid("default", "nmnist-sim", "nmnist", epochs=5),
    ),
)
SUITES.register(
    "locality-nmnist",
    Suite(
        "locality-nmnist",
        "The locality paper's N-MNIST study (Table II): BPTT, e-prop, DECOLLE x FF/REC, "
        "2312-120-84-10 LIF networks, 10 epochs; embedded data by default, real N-MNIST "
        "with --data-dir.",
        locality_grid("locality-nmnist", "nmnist-sim", "nmnist"),
    ),
)


SUITES.register(
    "locality-timit",
    Suite(
        "locality-timit",
        "The locality paper's TIMIT study (Table II): BPTT, e-prop, DECOLLE x FF/REC, "
        "39-400-61 LIF networks, frame-wise phone classification; needs --data-dir (TIMIT is "
        "licensed by the LDC).",
        locality_grid("locality-timit", None, "timit", epochs=10, batch_size=32),
    ),
)
SUITES.register(
    "locality-fsdd",
    Suite(
        "locality-fsdd",
        "Spoken digits (FSDD): BPTT, e-prop, DECOLLE x FF/REC, 39-200-10 LIF networks on MFCC "
        "sequences; does recurrence help on speech? Needs --data-dir (e.g. ../shared/data/fsdd).",
        locality_grid("locality-fsdd", None, "fsdd", epochs=10),
    ),
)


class _DataCache:
    """Load each (dataset, location, binning, subset) once per suite."""

    def __init__(self, progress: bool = True) -> None:
        self._data: dict[tuple, tuple[SampleData, SampleData]] = {}
        self.progress = progress

    def get(self, spec: ExperimentSpec) -> tuple[SampleData, SampleData]:
        key = (spec.dataset, spec.data_dir, spec.n_steps, spec.dt_ms, spec.encoder,
               spec.n_train, spec.n_test)
        if key not in self._data:
            info = DATASETS.get(spec.dataset)
            opts = {"n_steps": spec.n_steps, "dt_ms": spec.dt_ms, "encoder": spec.encoder,
                    "progress": self.progress}
            train = info.load("train", spec.data_dir, **opts).subset(spec.n_train)
            test = info.load("test", spec.data_dir, **opts).subset(spec.n_test)
            self._data[key] = (train, test)
        return self._data[key]


@dataclass
class SuiteResult:
    table: pd.DataFrame
    runs: list[RunResult]
    report: Path

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.runs if r.status != "done"]


def run_suite(name: str, out_dir: str | Path, opts: SuiteOptions | None = None) -> SuiteResult:
    suite = SUITES.get(name)
    opts = opts or SuiteOptions()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs, notes = suite.build(opts)
    if not specs:
        raise ValueError(f"suite {name!r} has no runs with the options given")
    data = _DataCache(opts.progress)
    rows: list[dict] = []
    runs: list[RunResult] = []
    for i, spec in enumerate(specs, 1):
        log.info("[%d/%d] %s", i, len(specs), spec.run_id)
        train, test = data.get(spec)
        result = train_run(spec, out_dir / "runs" / spec.run_id, train, test, opts.progress)
        if result.skipped:
            log.info("%s already %s; skipped", spec.run_id, result.status)
        runs.append(result)
        rows += tidy_rows(spec, result.metrics)
        write_atomic(to_frame(rows), out_dir / "results.csv")
    table = to_frame(rows)
    status = {r.spec.run_id: (r.status, r.message) for r in runs}
    report = write_report(out_dir, name, suite.description, table, status, notes)
    return SuiteResult(table, runs, report)
