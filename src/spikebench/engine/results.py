"""The tidy results table: one row per run, epoch and metric, with the spec's fields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spikebench.engine.spec import ExperimentSpec
from spikebench.io import atomic_write

ID_COLUMNS = ["suite", "run_id", "dataset", "rule", "arch", "neuron", "seed", "status"]
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
    base = {
        "suite": spec.suite,
        "run_id": spec.run_id,
        "dataset": spec.dataset,
        "rule": spec.rule,
        "arch": spec.arch,
        "neuron": spec.neuron,
        "seed": spec.seed,
        "status": status,
    }
    return split_rows(base, metrics, sizes)


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


def to_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[[c for c in COLUMNS if c in df.columns] + extra]


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
