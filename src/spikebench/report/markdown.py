"""Reports: Markdown tables (with the paper's figures beside ours) and PNG plots."""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import pandas as pd

from spikebench import __version__
from spikebench.engine.results import SIZE_METRICS, final_metric
from spikebench.io import atomic_write, save_figure, subplots
from spikebench.papers.locality import PAPER, PAPER_DATA, paper_accuracy

# along the locality axis, from the global rule to the most local ones
RULE_ORDER = ["bptt", "tbptt", "fptt", "ostl", "eprop", "ottt", "sltt", "decolle", "drtp"]
ARCH_ORDER = ["ff", "rec"]


def ordered(values, order) -> list:
    """``values`` once each: those in ``order`` first, in its order, then the rest sorted."""
    values, order = list(dict.fromkeys(values)), list(dict.fromkeys(order))
    return [v for v in order if v in values] + sorted(v for v in values if v not in order)


def pct(v: float | None) -> str:
    """An accuracy in [0, 1] as a percentage with one decimal; missing: an en dash."""
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def resolvable(a: float, b: float, n: int) -> bool:
    """Two accuracies on n samples differ by more than two binomial standard errors."""
    def se(p: float) -> float:
        return math.sqrt(max(p * (1 - p), 1e-12) / max(n, 1))

    return abs(a - b) > 2 * math.hypot(se(a), se(b))


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
    rules = ordered(fin["method"], RULE_ORDER)
    archs = ordered(fin["model"], ARCH_ORDER)
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
                sel = fin[(fin["method"] == r) & (fin["model"] == a) & (fin["dataset"] == ds)]
                ref = paper_accuracy(ds, r, a)
                row += [mean_std(sel["value"]), f"{ref:.2f}" if ref is not None else "–"]
        rows.append(row)
    return markdown_table(header, rows)


def plot_curves(df: pd.DataFrame, path: Path, title: str = "") -> None:
    """Test accuracy (%) and training loss per epoch, one line per run; the legend sits
    beside the axes, never over a curve."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = subplots(1, 2, figsize=(12, 4.2))
    colors = {"bptt": "tab:blue", "eprop": "tab:orange", "decolle": "tab:green"}
    for _run_id, g in df.groupby("run_id", sort=True):
        first = g.iloc[0]
        style = "-" if first["model"] == "ff" else "--"
        label = f"{first['method']} {first['model'].upper()} s{first['seed']}"
        color = colors.get(first["method"])
        for ax, metric, scale in zip(axes, ("test_acc", "train_loss"), (100.0, 1.0),
                                     strict=True):
            m = g[(g["metric"] == metric) & (g["epoch"] >= 1)].sort_values("epoch")
            if not m.empty:
                ax.plot(m["epoch"], m["value"] * scale, style, color=color, marker="o", ms=3,
                        label=label if metric == "test_acc" else None)
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy")
    axes[1].set(xlabel="epoch", ylabel="training loss", title="Training loss", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.86, 0.5),
                   fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    save_figure(fig, path)


def _counts(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: the samples it trained and was tested on (results' epoch-0 rows)."""
    sizes = df[df["metric"].isin(SIZE_METRICS)]
    if sizes.empty:
        return pd.DataFrame(columns=list(SIZE_METRICS))
    return sizes.pivot_table(index="run_id", columns="metric", values="value", aggfunc="first")


def _values(items) -> str:
    vals = list(dict.fromkeys(str(v) for v in items))
    return ", ".join(vals)


def params_text(params) -> str:
    """A neuron's parameters (a dataclass) as "alpha 0.8, ..., reset zero, surrogate ..."."""
    from dataclasses import asdict

    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in asdict(params).items())


def neuron_in_force(spec) -> str:
    """The hidden neurons' parameters a run trained with (the spec's LIF fields with its
    ``neuron_options`` over them: what ``spec.json`` holds in two places, resolved)."""
    return f"{spec.neuron} ({params_text(spec.neuron_params())})"


def trained_epochs(specs: list, df: pd.DataFrame) -> str:
    """The epochs the runs trained: "5", or "1 of 5" where a run ended early (it
    diverged, or its results stop there)."""
    last = (df[df["metric"] == "test_acc"].groupby("run_id")["epoch"].max()
            if not df.empty and "metric" in df else pd.Series(dtype=int))
    out = []
    for s in specs:
        got = int(last[s.run_id]) if s.run_id in last.index else 0
        out.append(str(s.epochs) if got == s.epochs else f"{got} of {s.epochs}")
    return _values(out)


def settings_table(specs: list, df: pd.DataFrame) -> str:
    """What ran, per data set: folder, samples, T, epochs, batch, lr, neuron, seeds."""
    counts = _counts(df)
    rows = []
    for ds in dict.fromkeys(s.dataset for s in specs):
        sel = [s for s in specs if s.dataset == ds]
        ids = [s.run_id for s in sel if s.run_id in counts.index]
        n_tr = _values(int(v) for v in counts.loc[ids, "n_train"]) if ids else "–"
        n_te = _values(int(v) for v in counts.loc[ids, "n_test"]) if ids else "–"
        folder = _values(s.data_dir or "embedded" for s in sel)
        rows.append([ds, f"`{folder}`", n_tr, n_te, _values(s.n_steps for s in sel),
                     _values(f"{s.dt_ms:g}" for s in sel), trained_epochs(sel, df),
                     _values(s.batch_size for s in sel), _values(f"{s.lr:g}" for s in sel),
                     _values(neuron_in_force(s) for s in sel), _values(s.seed for s in sel)])
    return markdown_table(["data set", "data folder", "train samples", "test samples", "T",
                           "bin ms", "epochs", "batch", "lr", "neuron", "seeds"], rows)


def runs_table(df: pd.DataFrame, status: dict[str, tuple[str, str]],
               timings: pd.DataFrame | None = None) -> str:
    counts = _counts(df)
    rows = []
    for run_id, g in df.groupby("run_id", sort=True):
        first = g.iloc[0]
        acc = g[g["metric"] == "test_acc"].sort_values("epoch")
        times = (timings[(timings["run_id"] == run_id) & (timings["metric"] == "epoch_time_s")]
                 ["value"] if timings is not None and not timings.empty else pd.Series([]))
        st, _ = status.get(run_id, (first.get("status", "?"), ""))
        n_test = int(counts.loc[run_id, "n_test"]) if run_id in counts.index else "–"
        rows.append([run_id, first["method"], first["model"].upper(), first["seed"], st,
                     int(acc["epoch"].max()) if not acc.empty else 0,
                     f"{100 * acc['value'].iloc[-1]:.2f}" if not acc.empty else "–", n_test,
                     f"{times.mean():.1f}" if not times.empty else "–"])
    for run_id, (st, _) in status.items():  # runs without any row (should not happen)
        if run_id not in set(df.get("run_id", [])):
            rows.append([run_id, "", "", "", st, 0, "–", "–", "–"])
    return markdown_table(
        ["run", "rule", "arch", "seed", "status", "epochs", "test acc %", "test samples",
         "s/epoch"], rows
    )


EFFICIENCY = ("test_synops_ac", "test_synops_mac", "test_synops_dense",
              "test_activation_sparsity", "test_membrane_updates", "test_connection_sparsity",
              "test_footprint_bytes")


def efficiency_section(df: pd.DataFrame, out_dir: Path, title: str) -> list[str]:
    """The efficiency metrics at each run's final epoch (``analysis.efficiency``,
    NeuroBench's definitions) per rule and arch, and ``efficiency.png``: accuracy vs
    effective SynOps per rule. Runs made before the metrics existed have none and are
    named as such."""
    have = df[df["metric"].isin(EFFICIENCY)]
    if have.empty:
        return []
    fin = {m: final_metric(df, m).set_index("run_id")["value"] for m in ("test_acc", *EFFICIENCY)}
    runs = fin["test_acc"].index
    missing = [r for r in runs if r not in fin["test_synops_ac"].index]
    meta = df.drop_duplicates("run_id").set_index("run_id")
    rows, points = [], {}
    for r in ordered(meta.loc[runs, "method"], RULE_ORDER):
        for a in ordered(meta.loc[runs, "model"], ARCH_ORDER):
            ids = [i for i in runs if meta.loc[i, "method"] == r and meta.loc[i, "model"] == a
                   and i in fin["test_synops_ac"].index]
            if not ids:
                continue

            def col(m, ids=ids):
                return fin[m].reindex(ids)

            synops = col("test_synops_ac") + col("test_synops_mac")
            points.setdefault(r, []).append((a, synops.mean(), 100 * col("test_acc").mean()))
            rows.append([r, a.upper(), f"{100 * col('test_acc').mean():.2f}",
                         f"{col('test_synops_ac').mean():.3g}",
                         f"{col('test_synops_mac').mean():.3g}",
                         f"{col('test_synops_dense').mean():.3g}",
                         f"{synops.mean() / col('test_synops_dense').mean():.3f}",
                         f"{col('test_activation_sparsity').mean():.4f}",
                         f"{col('test_membrane_updates').mean():.3g}",
                         f"{col('test_connection_sparsity').mean():.4f}",
                         f"{col('test_footprint_bytes').mean() / 1024:.1f}", len(ids)])
    fig, ax = subplots(figsize=(6.5, 4.2))
    colors = {"bptt": "tab:blue", "eprop": "tab:orange", "decolle": "tab:green"}
    for rule, pts in points.items():
        for arch, x, y in pts:
            ax.scatter(x, y, color=colors.get(rule, "gray"), marker="o" if arch == "ff" else "s",
                       label=f"{rule} {arch.upper()}")
    ax.set_xlabel("effective SynOps per sample (ACs + MACs, test set)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    save_figure(fig, out_dir / "efficiency.png")
    lines = ["## Efficiency (NeuroBench's definitions), final epoch", "",
             markdown_table(["rule", "arch", "test acc %", "eff. ACs", "eff. MACs",
                             "dense SynOps", "eff./dense", "activation sparsity",
                             "membrane updates", "connection sparsity", "footprint KiB",
                             "runs"], rows), "",
             "Per test sample, summed over its T steps (`spikebench.metrics.efficiency`): "
             "effective operations count (nonzero input, nonzero weight) pairs of every "
             "connection (W, V s[t-1], the readout), as ACs where the input is binary "
             "(spikes, binary event frames) and as MACs otherwise; *dense* counts every "
             "pair. Activation sparsity: zero outputs of the hidden spiking neurons. "
             "Membrane updates: NeuroBench's count (every neuron at the first step, then "
             "each neuron whose membrane changed in the step). The paper reports none of "
             "these; how sparse a code each rule learns is our measurement.", "",
             "![accuracy vs SynOps](efficiency.png)", ""]
    if missing:
        lines += [f"Runs without efficiency metrics (made before spikebench recorded them; "
                  f"delete their folders to retrain): {', '.join(f'`{m}`' for m in missing)}",
                  ""]
    return lines


def write_report(
    out_dir: Path,
    suite: str,
    description: str,
    df: pd.DataFrame,
    status: dict[str, tuple[str, str]],
    notes: list[str] | None = None,
    sections: list[str] | None = None,
    show_accuracy: bool = True,
    specs: list | None = None,
    timings: pd.DataFrame | None = None,
) -> Path:
    """``out_dir/report.md`` with ``curves.png`` beside it; ``sections``: the studies'
    Markdown, placed after the accuracy table. ``specs``: the runs' specs, whose effective
    settings (data folder, samples, T, epochs, ...) the report states."""
    out_dir = Path(out_dir)
    specs = specs or []
    parts = [
        f"# spikebench report: `{suite}`",
        "",
        f"{description}",
        "",
        f"spikebench {__version__}, written {_dt.datetime.now().isoformat(timespec='seconds')}. "
        "Tidy results: `results.csv` (wall times: `timings.csv`).",
        "",
    ]
    if specs:
        parts += ["## What ran", "", settings_table(specs, df), "",
                  "Sample counts are those each run trained and was tested on (after "
                  "`--n-train` / `--n-test`); every accuracy below is over its run's test "
                  "samples.", ""]
    if not df.empty and show_accuracy and (df["metric"] == "test_acc").any():
        counts = _counts(df)
        n_test = _values(int(v) for v in counts["n_test"]) if "n_test" in counts else "?"
        n_train = _values(int(v) for v in counts["n_train"]) if "n_train" in counts else "?"
        epochs = trained_epochs(specs, df) or "?"
        parts += [
            "## Test accuracy (%), final epoch",
            "",
            accuracy_table(df),
            "",
            f"*ours*: {n_train} training and {n_test} test samples, {epochs} epoch(s) (see "
            f"*What ran*). *paper*: {PAPER}, trained on the full data sets with the paper's "
            f"settings ({PAPER_DATA}). On `nmnist-sim` (simulated events from 5000 real "
            "MNIST digits) the paper's N-MNIST column is a point of orientation, not a "
            "like-for-like comparison. TIMIT: frame-wise accuracy after folding 61 -> 39 "
            "phones; FSDD: per recording.",
            "",
            "## Training curves",
            "",
            "![training curves](curves.png)",
            "",
        ]
        datasets = _values(s.dataset + (f" ({Path(s.data_dir).name})" if s.data_dir else "")
                           for s in specs) or _values(df["dataset"])
        plot_curves(df, out_dir / "curves.png",
                    f"{suite}: {datasets}, {n_train} train / {n_test} test samples, "
                    f"{_values(s.n_steps for s in specs) or '?'} steps")
        parts += efficiency_section(df, out_dir, f"{suite}: {datasets}")
    parts += sections or []
    parts += ["## Runs", "", runs_table(df, status, timings), ""]
    problems = [(r, m) for r, (s, m) in status.items() if s != "done"]
    if problems:
        parts += ["## Problems", ""] + [f"- `{r}`: {m}" for r, m in problems] + [""]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    path = out_dir / "report.md"
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(parts)))
    return path
