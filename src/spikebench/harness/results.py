"""The tidy results table: one row per run, epoch and metric, with the spec's fields."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spikebench.harness.spec import ExperimentSpec
from spikebench.io import atomic_write

ID_COLUMNS = ["suite", "run_id", "dataset", "rule", "arch", "neuron", "seed"]
COLUMNS = [*ID_COLUMNS, "epoch", "metric", "value"]


def tidy_rows(spec: ExperimentSpec, metrics: list[dict]) -> list[dict]:
    """Spec fields + {epoch, metric, value} for each metric record."""
    base = {
        "suite": spec.suite,
        "run_id": spec.run_id,
        "dataset": spec.dataset,
        "rule": spec.rule,
        "arch": spec.arch,
        "neuron": spec.neuron,
        "seed": spec.seed,
    }
    return [{**base, **m} for m in metrics]


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
