"""Figure 4: Fisher-information shares per layer (LW, RW) and traces per time step, of
every trained model of any suite kind (spiking MLPs, conv SNNs and ANNs, through the
models' ``Probed`` contract); the paper's findings where the suite has its FF/REC MLPs."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from spikebench.analysis.fisher import fisher_traces, shares
from spikebench.engine.train import seed_everything
from spikebench.io import subplots
from spikebench.report.markdown import ARCH_ORDER, RULE_ORDER, markdown_table, ordered
from spikebench.studies.base import (
    RULE_COLORS,
    StudyContext,
    StudyOutput,
    _ordered_rules,
    _pct,
    _save,
    layer_order,
    models_of,
    per_model,
    schema_columns,
    variant,
)

FISHER_VERSION = 2  # 2: a list per run, one entry per trained model with its columns


def _fisher_run(trained, spec, run_dir: Path, params: dict) -> list[dict]:
    """Fisher traces per weight group and time step, and their shares, of every trained
    model of one run."""
    out = []
    for m in trained(spec, run_dir, params["n"]):
        seed_everything(m.columns["seed"])
        traces = fisher_traces(m.model, m.model_input(m.x), m.y, m.burn_in)
        silent = not any(float(v.sum()) > 0 for v in traces.values())
        out.append({"columns": m.columns, "burn_in": m.burn_in, "n": len(m.y),
                    "traces": {g: v.tolist() for g, v in traces.items()},
                    # a model whose loss has no gradient at all (silent, with a surrogate
                    # of compact support): no shares, said in the report
                    "shares": {g: None for g in traces} if silent else shares(traces)})
    return out


def fisher_study(ctx: StudyContext) -> StudyOutput:
    n = ctx.n_eval if ctx.n_eval else (1000 if ctx.paper else 256)
    jobs = [(res.spec, run_dir, {"n": n}) for res, run_dir in ctx.done]
    if jobs and ctx.trained is None:
        models_of(ctx, *jobs[0])  # the error that names the suite
    rows, time_rows, counts, silent = [], [], set(), []
    for result in per_model(ctx, "fisher", partial(_fisher_run, ctx.trained), jobs,
                            FISHER_VERSION):
        for m in result:
            counts.add(m["n"])
            cols = {**schema_columns(ctx.suite, m["columns"]), "variant": variant(m["columns"])}
            if None in m["shares"].values():
                silent.append(f"{cols['run_id']} {cols['variant']}")
            for g, v in m["shares"].items():
                layer, kind = g.rsplit(".", 1)
                rows.append({**cols, "layer": layer, "kind": kind,
                             "share": float("nan") if v is None else v,
                             "trace_sum": float(np.sum(m["traces"][g]))})
            for g, trace in m["traces"].items():
                layer, kind = g.rsplit(".", 1)
                time_rows += [{**cols, "layer": layer, "kind": kind, "t": m["burn_in"] + t,
                               "trace": v} for t, v in enumerate(trace)]
    df, dt = pd.DataFrame(rows), pd.DataFrame(time_rows)
    if df.empty:
        return StudyOutput(["## Fisher information", "", "No finished runs.", ""])
    _plot_fisher(df, ctx.out_dir / "fisher.png")
    _plot_fisher_time(dt, ctx.out_dir / "fisher_time.png")
    groups = [g for g in ("LW", "RW") if g in set(df.kind)]
    layers = layer_order(df.layer)
    cols = [(layer, kind) for kind in groups for layer in layers
            if ((df.layer == layer) & (df.kind == kind)).any()]
    table_rows = []
    mean = df.groupby(["model", "variant", "layer", "kind"])["share"].mean()
    for model in ordered(df.model, ARCH_ORDER):
        for name in ordered(df[df.model == model].variant, RULE_ORDER):
            table_rows.append([model.upper(), name] + [
                _pct(mean.get((model, name, layer, kind), float("nan")))
                for layer, kind in cols])
    sections = [
        "## Fisher information (Figure 4)",
        "",
        f"Share (%) of each weight group in the trace of the empirical Fisher information, "
        f"summed over time steps (loss of the output accumulated up to each step), normalised "
        f"so that all groups of a model sum to 100; {', '.join(map(str, sorted(counts)))} "
        "test samples, mean over seeds. Gradients through the spikes use the surrogate "
        "derivative, unrolled in time, whatever rule or procedure trained the model. "
        "LW: input (feed-forward) weights, RW: recurrent weights.",
        "",
        markdown_table(["model", "method"] + [f"{layer} {kind}" for layer, kind in cols],
                       table_rows),
        "",
        "![Fisher shares](fisher.png)",
        "",
        "![Fisher traces per time step](fisher_time.png)",
        "",
    ]
    if silent:
        sections += [f"No shares (NaN) for {len(silent)} model(s) whose loss has no gradient "
                     "in any weight (no spike reaches the readout, and the surrogate is zero "
                     "so far from threshold): " + "; ".join(silent), ""]
    findings = _fisher_findings(df)
    if findings:
        sections += ["Findings, as the paper states them and as our numbers say:", "",
                     *findings, ""]
    return StudyOutput(sections, {"fisher": df, "fisher_time": dt})


def _plot_fisher(df: pd.DataFrame, path: Path) -> None:
    """One panel per (weight kind, model): LW-FF, LW-REC, RW-REC for the paper's MLPs."""
    panels = [(kind, model) for model in ordered(df.model, ARCH_ORDER) for kind in ("LW", "RW")
              if ((df.kind == kind) & (df.model == model)).any()]
    panels = sorted(panels, key=lambda p: p[0] == "RW")  # the paper's order: LW first
    fig, axes = subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    for ax, (kind, model) in zip(axes[0], panels, strict=True):
        sub = df[(df.kind == kind) & (df.model == model)]
        layers = layer_order(sub.layer)
        names = ordered(sub.variant, RULE_ORDER)
        width = 0.8 / max(len(names), 1)
        for i, name in enumerate(names):
            m = sub[sub.variant == name].groupby("layer")["share"].mean()
            ax.bar(np.arange(len(layers)) + i * width, [100 * m.get(la, 0) for la in layers],
                   width, color=RULE_COLORS.get(name), label=name)
        ax.set_xticks(np.arange(len(layers)) + width * (len(names) - 1) / 2, layers,
                      rotation=45 if len(layers) > 4 else 0)
        ax.set(title=f"{kind}-{model.upper()}", ylabel="share of FIM trace %")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=8)
    _save(fig, path)


def _plot_fisher_time(dt: pd.DataFrame, path: Path) -> None:
    models = ordered(dt.model, ARCH_ORDER)
    fig, axes = subplots(1, len(models), figsize=(5.5 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        sub = dt[dt.model == model]
        for name in ordered(sub.variant, RULE_ORDER):
            tot = sub[sub.variant == name].groupby(["seed", "t"])["trace"].sum() \
                .groupby("t").mean()
            ax.plot(tot.index, tot.values, color=RULE_COLORS.get(name), label=name)
        ax.set(title=f"{model.upper()}: FIM trace per time step", xlabel="time step t",
               ylabel="tr F[t] (all groups)", yscale="log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    _save(fig, path)


def _fisher_findings(df: pd.DataFrame) -> list[str]:
    out = []
    mean = df.groupby(["model", "variant", "layer", "kind"])["share"].mean()
    rec = df[df.model == "rec"]
    if not rec.empty and "RW" in set(rec.kind):
        for rule in _ordered_rules(rec.variant):
            rw = sum(mean.get(("rec", rule, la, "RW"), 0) for la in set(rec.layer))
            lw_hidden = sum(mean.get(("rec", rule, la, "LW"), 0) for la in set(rec.layer)
                            if la != "out")
            out.append(f"- *RW carries importance comparable to LW* ({rule}, REC): RW "
                       f"{_pct(rw)} % vs hidden LW {_pct(lw_hidden)} % "
                       f"({'agrees' if rw >= 0.5 * lw_hidden else 'does not agree'}).")
    for arch in [a for a in ARCH_ORDER if a in set(df.model)]:
        rules = [r for r in RULE_ORDER if r in set(df[df.model == arch].variant)]
        if len(rules) >= 2:
            vals = [mean.get((arch, r, "h1", "LW"), float("nan")) for r in rules]
            falling = all(a > b for a, b in zip(vals, vals[1:], strict=False))
            out.append(f"- *the input layer's share drops as locality rises* ({arch.upper()}): "
                       + ", ".join(f"{r} {_pct(v)} %" for r, v in zip(rules, vals, strict=True))
                       + f" ({'agrees' if falling else 'does not agree'}).")
    return out
