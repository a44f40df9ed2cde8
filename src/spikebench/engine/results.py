"""The tidy results table of every suite: one row per run (or stage of a run), epoch and
metric. Every suite's ``results.csv`` starts with ``COLUMNS`` (``ID_COLUMNS`` + epoch, metric,
value), then its kind's own columns, so any two suites' tables concatenate into one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spikebench.engine.spec import ExperimentSpec
from spikebench.io import atomic_write

# model: the architecture (ff, rec, vgg-small, resnet18, ...); neuron: its spiking neuron
# ("none": an ANN); method: the learning rule or training procedure; stage: the part of a run
# the row belongs to ("train" for a run of one stage)
ID_COLUMNS = ["suite", "run_id", "stage", "dataset", "model", "neuron", "method", "seed",
              "status"]
COLUMNS = [*ID_COLUMNS, "epoch", "metric", "value"]
# wall-clock measurements: kept out of results.csv (so that two identical runs give
# byte-identical results) and written to timings.csv instead
TIMING_METRICS = ("epoch_time_s",)
# epoch 0 of every run: the samples it trained and was tested on (so every run has rows,
# also one that diverged in its first epoch)
SIZE_METRICS = ("n_train", "n_test")
TIMING_COLUMNS = ["run_id", "epoch", "metric", "value"]


def tidy_rows(spec: ExperimentSpec, metrics: list[dict], status: str = "done",
              sizes: dict[str, int] | None = None) -> tuple[list[dict], list[dict]]:
    """(result rows, timing rows): spec fields + {epoch, metric, value} for each metric
    record, the run's status, and its sample counts at epoch 0."""
    base = identity(spec.suite, spec.run_id, "train", spec.dataset, spec.arch, spec.neuron,
                    spec.rule, spec.seed, status)
    return split_rows(base, metrics, sizes)


def identity(suite: str, run_id: str, stage: str, dataset: str, model: str, neuron: str,
             method: str, seed: int, status: str, **own) -> dict:
    """The identifying columns of a results row (``ID_COLUMNS``), then the kind's ``own``."""
    return {"suite": suite, "run_id": run_id, "stage": stage, "dataset": dataset,
            "model": model, "neuron": neuron, "method": method, "seed": seed,
            "status": status, **own}


def split_rows(base: dict, metrics: list[dict], sizes: dict[str, int] | None = None
               ) -> tuple[list[dict], list[dict]]:
    """(result rows, timing rows) of one run: ``base`` (its identifying columns, with
    ``run_id``) + each metric record, its sample counts at epoch 0; wall times apart."""
    counts = [{"epoch": 0, "metric": k, "value": v} for k, v in (sizes or {}).items()]
    rows = [{**base, **m} for m in counts + metrics if m["metric"] not in TIMING_METRICS]
    timings = [{"run_id": base["run_id"], **m} for m in metrics
               if m["metric"] in TIMING_METRICS]
    return rows, timings


def timings_frame(timings: list[dict]) -> pd.DataFrame:
    """The rows of ``timings.csv``."""
    return pd.DataFrame(timings, columns=TIMING_COLUMNS)


def write_atomic(df: pd.DataFrame, path: str | Path) -> None:
    """Write a CSV so that a reader never sees a half-written table."""
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def to_frame(rows: list[dict], own: tuple[str, ...] = ()) -> pd.DataFrame:
    """The rows as a results table: ``COLUMNS``, then the kind's ``own`` columns (then any
    other the rows hold)."""
    df, first = pd.DataFrame(rows), [*COLUMNS, *own]
    return df.reindex(columns=first + [c for c in df.columns if c not in first])


def final_metric(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """The last epoch's value of ``metric`` for every run."""
    sub = df[df["metric"] == metric]
    if sub.empty:
        return sub
    last = sub.loc[sub.groupby("run_id")["epoch"].idxmax()]
    return last.reset_index(drop=True)


@dataclass
class SuiteResult:
    """What a suite returns: its tidy table, its runs and the report's path."""

    table: pd.DataFrame
    runs: list  # RunResult of every run
    report: Path

    @property
    def failed(self) -> list:
        return [r for r in self.runs if r.status != "done"]
