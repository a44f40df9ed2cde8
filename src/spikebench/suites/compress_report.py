"""The compress-robust suite's report: the Pareto front of accuracy vs SynOps, the
findings of HIRE-SNN and AGC tested against our figures, and report.md."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from spikebench.attacks.diagnostics import LEGEND, flags
from spikebench.attacks.ensemble import protocol
from spikebench.engine.executor import RunResult
from spikebench.engine.results import identity, split_rows, timings_frame, to_frame
from spikebench.io import atomic_write, save_figure, subplots
from spikebench.papers.kundu import CLAIMS, REFERENCE
from spikebench.report.markdown import markdown_table, params_text, pct, resolvable
from spikebench.suites.compress import METHODS, CompressSpec
from spikebench.suites.compress_hybrid import last_acc

OWN_COLUMNS = ("coding", "steps", "density")


def _base(name: str, spec: CompressSpec, status: str) -> dict:
    neuron = "diet-if" if spec.regime == "hybrid" else "lif"
    return identity(name, spec.run_id, "train", spec.dataset, spec.arch, neuron, spec.method,
                    spec.seed, status, coding=spec.coding, steps=spec.steps,
                    density=spec.density if "agc" in spec.method else 1.0)


def _tables(name: str, results: list[RunResult]) -> dict:
    rows, tidy, timings, notes = [], [], [], []
    for r in results:
        spec = r.spec
        base = _base(name, spec, r.status)
        got, t = split_rows(base, r.metrics, r.sizes)
        tidy, timings = tidy + got, timings + t
        if r.status != "done":
            notes.append(f"{spec.run_id}: {r.message}")
            continue
        ev = r.details.get("evaluation", {})
        last = max((m["epoch"] for m in r.metrics), default=0)
        tidy += [{**base, "epoch": last, "metric": f"robust_{k}", "value": v}
                 for k, v in ev.items()]
        epoch_s = [m["value"] for m in r.metrics if m["metric"] == "epoch_time_s"]
        rows.append({**{k: base[k] for k in ("suite", "run_id", "method", "coding", "steps",
                                             "density", "seed")},
                     "test_acc": last_acc(r), "n_test": r.details.get("n_test", 0),
                     "ann_acc": r.details.get("ann_acc", float("nan")),
                     "epoch_time_s": sum(epoch_s) / len(epoch_s) if epoch_s else float("nan"),
                     **ev})
    return {"compress": pd.DataFrame(rows), "tidy": to_frame(tidy, OWN_COLUMNS),
            "timings": timings_frame(timings), "notes": notes}


MARKERS = {"standard": "o", "hire": "s", "agc": "^", "hire+agc": "D", "agc-unguided": "v"}


def _synops(df: pd.DataFrame) -> pd.Series:
    return df.eff_synops_ac + df.eff_synops_mac


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats in both cost (lower) and accuracy (higher)."""
    front, best = [], -math.inf
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((cost, acc))
            best = acc
    return front


def _panel(ax, df: pd.DataFrame, cost, col: str, xlabel: str, title: str) -> None:
    """One panel: accuracy ``col`` against ``cost(rows)``, a marker and colour per method
    (filled: direct input, open: rate code), with the panel's Pareto front."""
    colours = {m: f"C{i}" for i, m in enumerate(METHODS)}
    for (method, coding), g in df.groupby(["method", "coding"], sort=False):
        colour = colours.get(method, "k")
        ax.scatter(cost(g), 100 * g[col], marker=MARKERS.get(method, "x"),
                   facecolors=colour if coding == "direct" else "none", edgecolors=colour,
                   label=f"{method} ({coding})")
    front = pareto_front(list(zip(cost(df), 100 * df[col], strict=True)))
    ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=0.8, label="Pareto front")
    ax.set(xscale="log", xlabel=xlabel, ylabel=f"{title} %", title=title)
    ax.grid(alpha=0.3)


def pareto_figure(df: pd.DataFrame):
    """Clean and robust accuracy vs SynOps (``_panel``)."""
    fig, axes = subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for ax, col, title in ((axes[0], "clean", "clean accuracy"),
                           (axes[1], "ensemble", "robust accuracy (ensemble)")):
        _panel(ax, df, _synops, col, "SynOps per image (ACs + MACs)", title)
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def latency_figure(df: pd.DataFrame):
    """Robust accuracy (ensemble) against latency T (``_panel``)."""
    fig, ax = subplots(1, 1, figsize=(6.5, 4.2))
    _panel(ax, df, lambda g: g.steps, "ensemble", "latency T (time steps)",
           "robust accuracy (ensemble)")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def _plot_pareto(df: pd.DataFrame, path: Path) -> None:
    save_figure(pareto_figure(df), path)
    save_figure(latency_figure(df), path.with_name("pareto_latency.png"))


def findings(df: pd.DataFrame) -> list[str]:
    """The papers' claims against our numbers (two binomial standard errors)."""
    out = []
    n = int(df.n.iloc[0]) if "n" in df and len(df) else 1

    def cell(method, coding, steps):
        g = df[(df.method == method) & (df.coding == coding) & (df.steps == steps)]
        return g.mean(numeric_only=True) if len(g) else None

    rates = df[(df.method == "standard") & (df.coding == "bernoulli")]
    for steps in sorted(set(df.steps)):
        d, r = cell("standard", "direct", steps), cell("standard", "bernoulli", steps)
        h = cell("hire", "direct", steps)
        if h is not None and len(rates) and rates.steps.max() > steps:
            out.append(_latency(h, rates.loc[rates.steps.idxmax()], steps))
        if d is not None and r is not None:
            diff = r.ensemble - d.ensemble
            called = resolvable(r.ensemble, d.ensemble, n)
            out.append(f"T={steps}: rate-coded vs direct-input standard SNN, robust accuracy "
                       f"{pct(r.ensemble)} vs {pct(d.ensemble)} % ("
                       + ("supports" if called and diff > 0 else "does not support")
                       + " the claim that direct input loses the rate code's robustness; "
                       f"clean {pct(r.clean)} vs {pct(d.clean)} %).")
        if d is not None and h is not None:
            diff = h.ensemble - d.ensemble
            called = resolvable(h.ensemble, d.ensemble, n)
            out.append(f"T={steps}: HIRE-SNN vs standard (direct), robust accuracy "
                       f"{pct(h.ensemble)} vs {pct(d.ensemble)} %, FGSM {pct(h.fgsm)} vs "
                       f"{pct(d.fgsm)} %, clean {pct(h.clean)} vs {pct(d.clean)} % ("
                       + ("HIRE-SNN wins robustness" if called and diff > 0 else
                          "HIRE-SNN loses robustness" if called else "no resolvable difference")
                       + f"); training time per epoch {h.epoch_time_s:.1f} vs "
                       f"{d.epoch_time_s:.1f} s ({h.epoch_time_s / d.epoch_time_s:.2f}x).")
    direct = set(df[df.coding == "direct"].steps) or set(df.steps)
    steps = 4 if 4 in direct else min(direct)
    u = cell("agc-unguided", "direct", steps)
    g = df[(df.method == "agc") & (df.coding == "direct") & (df.steps == steps)]
    g = g[(g.density - u.density).abs() < 1e-12].mean(numeric_only=True) if u is not None \
        else None  # the same density as the ablation, not the sweep's
    if g is not None and u is not None and not math.isnan(g.test_acc):
        out.append(_guidance(g, u, steps))
    sweep = df[(df.method == "agc") & (df.coding == "direct") & (df.steps == steps)]
    sweep = sweep.sort_values("compression")
    if len(sweep) > 1:
        out.append(f"AGC compression sweep (T={steps}, direct): " + "; ".join(
            f"{c:.1f}x: clean {pct(a)} %, robust {pct(e)} %, spikes {s:.0f}"
            for c, a, e, s in zip(sweep.compression, sweep.clean, sweep.ensemble,
                                  sweep.spikes_per_image, strict=True)) + ".")
    return out


def _latency(h, r, steps: int) -> str:
    """HIRE-SNN (direct, T = steps) against the rate-coded SNN at its long T."""
    n = int(min(h.n, r.n))
    diff, called = h.ensemble - r.ensemble, resolvable(h.ensemble, r.ensemble, n)
    verdict = ("supports" if not called or diff > 0 else "does not support")
    ratio = _synops(pd.DataFrame([r])).iloc[0] / _synops(pd.DataFrame([h])).iloc[0]
    return (f"T={steps}: direct-input HIRE-SNN vs the rate-coded SNN at T={int(r.steps)} "
            f"({r.steps / steps:.0f}x the latency), robust accuracy {pct(h.ensemble)} vs "
            f"{pct(r.ensemble)} % (n = {n}; "
            + ("HIRE-SNN higher" if called and diff > 0 else "rate code higher" if called
               else "no resolvable difference")
            + f"), clean {pct(h.clean)} vs {pct(r.clean)} %, SynOps {ratio:.1f}x lower: "
            f"{verdict} the claim that {CLAIMS['latency']}.")


def _guidance(g, u, steps: int) -> str:
    """AGC with against without attention guidance (the same density and T)."""
    n = int(min(g.n_test, u.n_test))
    called = resolvable(g.test_acc, u.test_acc, n)
    verdict = "supports" if called and g.test_acc > u.test_acc else "does not support"
    return (f"T={steps}: AGC with vs without attention guidance, test accuracy "
            f"{pct(g.test_acc)} vs {pct(u.test_acc)} % (n = {n}), compressed ANN "
            f"{pct(g.ann_acc)} vs {pct(u.ann_acc)} %, robust {pct(g.ensemble)} vs "
            f"{pct(u.ensemble)} %: {verdict} the claim that {CLAIMS['guidance']}.")


def _schedule(spec, specs) -> str:
    """What trained, in the spec's regime."""
    if spec.regime != "hybrid":
        return f"{spec.epochs} epochs (AGC: {spec.finetune_epochs} fine-tuning epochs)"
    rate = [s for s in specs if s.coding != "direct"]
    return (f"hybrid training (DIET-SNN): a BatchNorm-free ANN for {spec.ann_epochs} epochs "
            f"at lr {spec.lr:g} (AGC: the compressed ANN as long), thresholds at the "
            f"{spec.percentile:g}th percentile of {spec.n_calib} training images' currents x "
            f"{spec.threshold_scale:g}, SNN fine-tuning for {spec.epochs} epochs at lr "
            f"{spec.finetune_lr:g}" + "".join(
                f"; the rate-coded SNN at T={s.steps}: thresholds x {s.threshold_scale:g}, "
                f"{s.epochs} fine-tuning epoch(s), attacked on {s.n_attack} images"
                for s in rate[:1]))


def _neuron(spec):
    from spikebench.suites.compress import neurons

    return neurons(spec)  # compress.build's neurons


def _codings(specs) -> str:
    """Which methods ran with which input coding ("direct: standard, hire; bernoulli:
    standard")."""
    by = {}
    for s in specs:
        by.setdefault(s.coding, [])
        if s.method not in by[s.coding]:
            by[s.coding].append(s.method)
    return "codings " + "; ".join(f"{c}: {', '.join(m)}" for c, m in by.items())


def _write_report(out_dir, name, description, specs, tables, notes, wall) -> Path:
    df = tables["compress"]
    spec = specs[0]
    parts = [f"# spikebench report: `{name}`", "", description, "",
             f"Wall time of this invocation: {wall:.0f} s. Tables: `compress.csv` (a row per "
             "model), tidy: `results.csv`.", "",
             f"What ran: `{spec.dataset}` ({spec.data_dir or 'embedded'}), "
             f"{spec.n_train or 'all'} training / {spec.n_test or 'all'} test images, arch "
             f"`{spec.arch}`, T in {sorted({s.steps for s in specs})}, {_codings(specs)}, "
             + _schedule(spec, specs) + f", HIRE: {spec.hire_periods} periods, "
             f"eps {spec.hire_eps:g}, craft `{spec.hire_craft}`"
             + (" (ours: the input gradient of the period's own backward pass)"
                if spec.hire_craft == "free" else " (the paper's: with the updated weights)")
             + f"; AGC beta {spec.agc_beta:g}.",
             "", f"Neurons in force (every method): {_base(name, spec, '')['neuron']} "
             f"({params_text(_neuron(spec))}).", ""]
    if not df.empty:
        rows = []
        for _, r in df.iterrows():
            rows.append([r.method, r.coding, str(r.steps), f"{r.compression:.1f}x",
                         pct(r.clean), pct(r.fgsm), pct(r.pgd), pct(r.ensemble),
                         pct(r.gaussian), f"{int(r.nonzero_weights)}",
                         f"{r.eff_synops_ac + r.eff_synops_mac:.3g}",
                         f"{r.spikes_per_image:.0f}", f"{r.epoch_time_s:.1f}",
                         "; ".join(flags(r.to_dict(), int(r.n))) or "none"])
        n = int(df.n.iloc[0])
        parts += [
            f"## Accuracy (%), robustness at eps {spec.eps:g} and cost",
            "",
            markdown_table(["method", "coding", "T", "compression", "clean", "FGSM",
                            f"PGD-{spec.pgd_steps}", "ensemble", "Gaussian",
                            "nonzero weights", "SynOps / image", "spikes / image",
                            "s / epoch", "masking checks"], rows),
            "",
            f"On the first {n} test images; PGD through the training surrogate; "
            f"{protocol(spec)}; {LEGEND}; rate-coded models attacked with EOT over "
            f"{spec.eot} encodings. SynOps: `analysis.efficiency.conv_workload` (NeuroBench's "
            "rule: MACs for non-binary inputs, i.e. direct pixels and average-pooled spikes; "
            "ACs for spikes). s / epoch: mean training epoch time (AGC rows: its fine-tuning).",
            "",
            "Papers' figures (CIFAR, not comparable in value): "
            + "; ".join(f"{m}: {REFERENCE[m]}" for m in METHODS) + ".",
            "",
            "![Pareto](pareto.png)",
            "",
            "## Findings",
            "",
        ] + [f"- {f}" for f in findings(df)] + [""]
    notes = notes + tables["notes"]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    path = out_dir / "report.md"
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(parts)))
    return path
