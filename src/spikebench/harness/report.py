"""Reports: Markdown tables (with the paper's figures beside ours) and PNG plots."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from spikebench import __version__  # noqa: E402
from spikebench.harness.reference import PAPER, paper_accuracy  # noqa: E402
from spikebench.harness.results import final_metric  # noqa: E402
from spikebench.io import atomic_write, save_figure  # noqa: E402

RULE_ORDER = ["bptt", "eprop", "decolle"]
ARCH_ORDER = ["ff", "rec"]


def _ordered(values, order):
    values = list(dict.fromkeys(values))
    return [v for v in order if v in values] + sorted(v for v in values if v not in order)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def mean_std(values: pd.Series, scale: float = 100.0) -> str:
    v = values.dropna() * scale
    if v.empty:
        return "–"
    if len(v) == 1:
        return f"{v.iloc[0]:.2f}"
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f} (n={len(v)})"


def headline_metric(df: pd.DataFrame, dataset: str) -> str:
    """The accuracy compared with the paper: folded (TIMIT 61 -> 39) where there is one."""
    has_folded = ((df["dataset"] == dataset) & (df["metric"] == "test_acc_folded")).any()
    return "test_acc_folded" if has_folded else "test_acc"


def accuracy_table(df: pd.DataFrame) -> str:
    """Final test accuracy per rule (rows) and arch (columns), ours beside the paper's."""
    fin = pd.concat([
        final_metric(df[df["dataset"] == ds], headline_metric(df, ds))
        for ds in dict.fromkeys(df["dataset"])
    ])
    rules = _ordered(fin["rule"], RULE_ORDER)
    archs = _ordered(fin["arch"], ARCH_ORDER)
    datasets = list(dict.fromkeys(fin["dataset"]))
    header = ["rule"]
    for ds in datasets:
        for a in archs:
            header += [f"{ds} {a.upper()} ours", f"{a.upper()} paper"]
    rows = []
    for r in rules:
        row = [r]
        for ds in datasets:
            for a in archs:
                sel = fin[(fin["rule"] == r) & (fin["arch"] == a) & (fin["dataset"] == ds)]
                ref = paper_accuracy(ds, r, a)
                row += [mean_std(sel["value"]), f"{ref:.2f}" if ref is not None else "–"]
        rows.append(row)
    return markdown_table(header, rows)


def plot_curves(df: pd.DataFrame, path: Path) -> None:
    """Test accuracy and training loss per epoch, one line per run."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = {"bptt": "tab:blue", "eprop": "tab:orange", "decolle": "tab:green"}
    for _run_id, g in df.groupby("run_id", sort=True):
        first = g.iloc[0]
        style = "-" if first["arch"] == "ff" else "--"
        label = f"{first['rule']} {first['arch'].upper()} s{first['seed']}"
        color = colors.get(first["rule"])
        for ax, metric in zip(axes, ("test_acc", "train_loss"), strict=True):
            m = g[g["metric"] == metric].sort_values("epoch")
            if not m.empty:
                ax.plot(m["epoch"], m["value"], style, color=color, marker="o", ms=3,
                        label=label)
    axes[0].set(xlabel="epoch", ylabel="test accuracy", title="Test accuracy")
    axes[1].set(xlabel="epoch", ylabel="training loss", title="Training loss", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def runs_table(df: pd.DataFrame, status: dict[str, tuple[str, str]]) -> str:
    rows = []
    for run_id, g in df.groupby("run_id", sort=True):
        first = g.iloc[0]
        acc = g[g["metric"] == "test_acc"].sort_values("epoch")
        times = g[g["metric"] == "epoch_time_s"]["value"]
        st, _ = status.get(run_id, ("?", ""))
        rows.append([run_id, first["rule"], first["arch"].upper(), first["seed"], st,
                     int(acc["epoch"].max()) if not acc.empty else 0,
                     f"{100 * acc['value'].iloc[-1]:.2f}" if not acc.empty else "–",
                     f"{times.mean():.1f}" if not times.empty else "–"])
    for run_id, (st, _) in status.items():  # runs that ended before their first epoch
        if run_id not in set(df.get("run_id", [])):
            rows.append([run_id, "", "", "", st, 0, "–", "–"])
    return markdown_table(
        ["run", "rule", "arch", "seed", "status", "epochs", "test acc %", "s/epoch"], rows
    )


def write_report(
    out_dir: Path,
    suite: str,
    description: str,
    df: pd.DataFrame,
    status: dict[str, tuple[str, str]],
    notes: list[str] | None = None,
    sections: list[str] | None = None,
    show_accuracy: bool = True,
) -> Path:
    """``out_dir/report.md`` with ``curves.png`` beside it; ``sections``: the studies'
    Markdown, placed after the accuracy table."""
    out_dir = Path(out_dir)
    parts = [
        f"# spikebench report: `{suite}`",
        "",
        f"{description}",
        "",
        f"spikebench {__version__}, written {_dt.datetime.now().isoformat(timespec='seconds')}. "
        "Tidy results: `results.csv`.",
        "",
    ]
    if not df.empty and show_accuracy:
        parts += [
            "## Test accuracy (%), final epoch",
            "",
            accuracy_table(df),
            "",
            f"*paper*: {PAPER}, trained on the full data sets with the paper's settings. "
            "On `nmnist-sim` (simulated events from 5000 real MNIST digits) the paper's "
            "N-MNIST column is a point of orientation, not a like-for-like comparison. "
            "TIMIT: frame-wise accuracy after folding 61 -> 39 phones; FSDD: per recording.",
            "",
            "## Training curves",
            "",
            "![training curves](curves.png)",
            "",
        ]
        plot_curves(df, out_dir / "curves.png")
    parts += sections or []
    parts += ["## Runs", "", runs_table(df, status), ""]
    problems = [(r, m) for r, (s, m) in status.items() if s != "done"]
    if problems:
        parts += ["## Problems", ""] + [f"- `{r}`: {m}" for r, m in problems] + [""]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    path = out_dir / "report.md"
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(parts)))
    return path
