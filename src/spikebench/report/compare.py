"""Compare any suites' results: their ``results.csv`` share the first columns
(``engine.results.COLUMNS``), so they concatenate into one tidy table; ``compare_table`` and
``compare_figure`` put one metric of every (suite, model, neuron, method, stage) side by side.
``spikebench compare`` writes both."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spikebench.engine.results import COLUMNS, ID_COLUMNS
from spikebench.errors import ConfigError
from spikebench.io import subplots

GROUP = ["suite", "dataset", "model", "neuron", "method", "stage"]


def read_results(*paths: str | Path) -> pd.DataFrame:
    """The ``results.csv`` files as one table (their common columns first, then each kind's
    own, missing where a suite has none). A file that is not such a table is a ConfigError
    that names it."""
    frames = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such results file; give the results.csv a suite "
                              f"wrote (spikebench run ... --out DIR writes DIR/results.csv)")
        try:
            df = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not a CSV table ({e})") from None
        if list(df.columns[:len(COLUMNS)]) != COLUMNS:
            raise ConfigError(
                f"{path}: its columns do not start with {', '.join(COLUMNS)} (written by an "
                f"older spikebench?); rerun its suite to rewrite it (trained runs are reused)")
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.concat(frames, ignore_index=True, sort=False)
    own = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS + own]


def final_values(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """``metric`` at each run's (stage's) last epoch with it, one row per run."""
    sub = df[(df["metric"] == metric) & (df["status"] == "done")]
    if sub.empty:
        return sub[[*ID_COLUMNS, "epoch", "value"]]
    last = sub.loc[sub.groupby(["suite", "run_id", "stage"])["epoch"].idxmax()]
    return last[[*ID_COLUMNS, "epoch", "value"]].reset_index(drop=True)


def compare_table(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Per (suite, dataset, model, neuron, method, stage): mean, sample standard deviation
    (NaN for one seed) and number of seeds of ``metric`` at the last epoch."""
    fin = final_values(df, metric)
    if fin.empty:
        return pd.DataFrame(columns=[*GROUP, "mean", "std", "n"])
    out = fin.groupby(GROUP, sort=False, dropna=False)["value"].agg(["mean", "std", "count"])
    return out.rename(columns={"count": "n"}).reset_index()


def compare_figure(df: pd.DataFrame, metric: str = "test_acc"):
    """A horizontal bar per (suite, dataset, model, neuron, method, stage): the mean of
    ``metric`` over seeds, the sample standard deviation as its error bar; a matplotlib
    Figure (no pyplot)."""
    table = compare_table(df, metric)
    fig, ax = subplots(figsize=(8, 1.2 + 0.32 * max(len(table), 1)))
    labels = [" / ".join(str(r[c]) for c in GROUP) for _, r in table.iterrows()]
    ax.barh(range(len(table)), table["mean"], xerr=table["std"].fillna(0.0), color="tab:blue",
            alpha=0.8, capsize=3)
    ax.set_yticks(range(len(table)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (last epoch; mean ± std over seeds)")
    ax.set_title("suite / data set / model / neuron / method / stage", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def write_comparison(paths: list[Path], out_dir: Path, metric: str = "test_acc") -> Path:
    """``compare.md`` (the table, and the files it read) and ``compare.png`` in ``out_dir``;
    returns the Markdown's path. A metric no file holds is a ConfigError naming the ones they
    do."""
    from spikebench.io import atomic_write, save_figure, writable_folder
    from spikebench.report.markdown import markdown_table

    writable_folder(out_dir, "--out")
    df = read_results(*paths)
    if metric not in set(df["metric"]):
        known = ", ".join(sorted(m for m in set(df["metric"]) if "@" not in m)[:30])
        raise ConfigError(f"--metric {metric!r}: no such metric in {', '.join(map(str, paths))}"
                          f"; they hold e.g. {known}")
    table = compare_table(df, metric)
    save_figure(compare_figure(df, metric), out_dir / "compare.png")
    rows = [[*(str(r[c]) for c in GROUP), f"{r['mean']:.4g}",
             "–" if pd.isna(r["std"]) else f"{r['std']:.2g}", int(r["n"])]
            for _, r in table.iterrows()]
    text = "\n".join([f"# {metric}: {len(paths)} results files compared", "",
                      *(f"- `{p}`" for p in paths), "",
                      markdown_table([*GROUP, "mean", "std", "seeds"], rows), "",
                      "At each run's (stage's) last epoch with the metric; runs that did not "
                      "finish are left out.", "", "![comparison](compare.png)", ""])
    path = out_dir / "compare.md"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path
