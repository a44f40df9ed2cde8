"""Figure 4: Fisher-information shares per layer (LW, RW) and traces per time step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spikebench.analysis.fisher import fisher_traces, shares
from spikebench.attacks.art import (
    Classifier,
)
from spikebench.engine.data import spec_test_set
from spikebench.engine.train import seed_everything
from spikebench.io import subplots
from spikebench.report.markdown import ARCH_ORDER, RULE_ORDER, markdown_table
from spikebench.studies.base import (
    RULE_COLORS,
    StudyContext,
    StudyOutput,
    _ordered_rules,
    _pct,
    _save,
    eval_count,
    eval_samples,
    load_model,
    per_model,
    run_columns,
)


def _fisher_one(spec, run_dir: Path, params: dict) -> dict:
    """Fisher traces per weight group and time step, and their shares, of one run."""
    test = spec_test_set(spec)
    x, y = eval_samples(test, params["n"])
    model = load_model(run_dir, train=True)
    clf = Classifier(model, spec.burn_in, test.encode)
    seed_everything(spec.seed)
    xt = test.encode(x) if test.encode is not None else clf.time_major(x)
    traces = fisher_traces(model, xt, y, spec.burn_in)
    return {"traces": {g: v.tolist() for g, v in traces.items()}, "shares": shares(traces)}


def fisher_study(ctx: StudyContext) -> StudyOutput:
    n = ctx.n_eval if ctx.n_eval else (1000 if ctx.paper else 256)
    jobs = [(res.spec, run_dir, {"n": eval_count(spec_test_set(res.spec), n)})
            for res, run_dir in ctx.done]
    rows, time_rows = [], []
    counts = {params["n"] for _, _, params in jobs}
    for (spec, _, _), result in zip(jobs, per_model(ctx, "fisher", _fisher_one, jobs),
                                    strict=True):
        for g, v in result["shares"].items():
            layer, kind = g.split(".")
            rows.append({**run_columns(spec), "layer": layer, "kind": kind, "share": v,
                         "trace_sum": float(np.sum(result["traces"][g]))})
        for g, trace in result["traces"].items():
            layer, kind = g.split(".")
            time_rows += [{**run_columns(spec), "layer": layer, "kind": kind,
                           "t": spec.burn_in + t, "trace": v} for t, v in enumerate(trace)]
    df, dt = pd.DataFrame(rows), pd.DataFrame(time_rows)
    if df.empty:
        return StudyOutput(["## Fisher information", "", "No finished runs.", ""])
    _plot_fisher(df, ctx.out_dir / "fisher.png")
    _plot_fisher_time(dt, ctx.out_dir / "fisher_time.png")
    groups = [g for g in ("LW", "RW") if g in set(df.kind)]
    cols = [(layer, kind) for kind in groups for layer in
            sorted(set(df.layer), key=lambda s: (s == "out", s)) if
            ((df.layer == layer) & (df.kind == kind)).any()]
    table_rows = []
    mean = df.groupby(["arch", "rule", "layer", "kind"])["share"].mean()
    for arch in [a for a in ARCH_ORDER if a in set(df.arch)]:
        for rule in _ordered_rules(df[df.arch == arch].rule):
            table_rows.append([arch.upper(), rule] + [
                _pct(mean.get((arch, rule, layer, kind), float("nan"))) for layer, kind in cols])
    sections = [
        "## Fisher information (Figure 4)",
        "",
        f"Share (%) of each weight group in the trace of the empirical Fisher information, "
        f"summed over time steps (loss of the output accumulated up to each step), normalised "
        f"so that all groups of a model sum to 100; {', '.join(map(str, sorted(counts)))} "
        "test samples, mean over seeds. Gradients through the spikes use the surrogate "
        "derivative, unrolled in time, whatever rule trained the model. "
        "LW: linear (input) weights, RW: recurrent weights.",
        "",
        markdown_table(["arch", "rule"] + [f"{layer} {kind}" for layer, kind in cols],
                       table_rows),
        "",
        "![Fisher shares](fisher.png)",
        "",
        "![Fisher traces per time step](fisher_time.png)",
        "",
        "Findings, as the paper states them and as our numbers say:",
        "",
        *_fisher_findings(df),
        "",
    ]
    return StudyOutput(sections, {"fisher": df, "fisher_time": dt})


def _plot_fisher(df: pd.DataFrame, path: Path) -> None:
    panels = [("LW", "ff"), ("LW", "rec"), ("RW", "rec")]
    panels = [p for p in panels if ((df.kind == p[0]) & (df.arch == p[1])).any()]
    fig, axes = subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    for ax, (kind, arch) in zip(axes[0], panels, strict=True):
        sub = df[(df.kind == kind) & (df.arch == arch)]
        layers = sorted(set(sub.layer), key=lambda s: (s == "out", s))
        rules = _ordered_rules(sub.rule)
        width = 0.8 / max(len(rules), 1)
        for i, rule in enumerate(rules):
            m = sub[sub.rule == rule].groupby("layer")["share"].mean()
            ax.bar(np.arange(len(layers)) + i * width, [100 * m.get(la, 0) for la in layers],
                   width, color=RULE_COLORS.get(rule), label=rule)
        ax.set_xticks(np.arange(len(layers)) + width * (len(rules) - 1) / 2, layers)
        ax.set(title=f"{kind}-{arch.upper()}", ylabel="share of FIM trace %")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=8)
    _save(fig, path)


def _plot_fisher_time(dt: pd.DataFrame, path: Path) -> None:
    archs = [a for a in ARCH_ORDER if a in set(dt.arch)]
    fig, axes = subplots(1, len(archs), figsize=(5.5 * len(archs), 3.8), squeeze=False)
    for ax, arch in zip(axes[0], archs, strict=True):
        sub = dt[dt.arch == arch]
        for rule in _ordered_rules(sub.rule):
            tot = sub[sub.rule == rule].groupby(["seed", "t"])["trace"].sum().groupby("t").mean()
            ax.plot(tot.index, tot.values, color=RULE_COLORS.get(rule), label=rule)
        ax.set(title=f"{arch.upper()}: FIM trace per time step", xlabel="time step t",
               ylabel="tr F[t] (all groups)", yscale="log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    _save(fig, path)


def _fisher_findings(df: pd.DataFrame) -> list[str]:
    out = []
    mean = df.groupby(["arch", "rule", "layer", "kind"])["share"].mean()
    rec = df[df.arch == "rec"]
    if not rec.empty and "RW" in set(rec.kind):
        for rule in _ordered_rules(rec.rule):
            rw = sum(mean.get(("rec", rule, la, "RW"), 0) for la in set(rec.layer))
            lw_hidden = sum(mean.get(("rec", rule, la, "LW"), 0) for la in set(rec.layer)
                            if la != "out")
            out.append(f"- *RW carries importance comparable to LW* ({rule}, REC): RW "
                       f"{_pct(rw)} % vs hidden LW {_pct(lw_hidden)} % "
                       f"({'agrees' if rw >= 0.5 * lw_hidden else 'does not agree'}).")
    for arch in [a for a in ARCH_ORDER if a in set(df.arch)]:
        rules = [r for r in RULE_ORDER if r in set(df[df.arch == arch].rule)]
        if len(rules) >= 2:
            vals = [mean.get((arch, r, "h1", "LW"), float("nan")) for r in rules]
            falling = all(a > b for a, b in zip(vals, vals[1:], strict=False))
            out.append(f"- *the input layer's share drops as locality rises* ({arch.upper()}): "
                       + ", ".join(f"{r} {_pct(v)} %" for r, v in zip(rules, vals, strict=True))
                       + f" ({'agrees' if falling else 'does not agree'}).")
    return out
