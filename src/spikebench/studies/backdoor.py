"""Table IV: clean accuracy and attack success rate of BadNets per poison rate."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spikebench.attacks.art import (
    predict,
)
from spikebench.datasets.poison import Backdoor, triggered_source
from spikebench.engine.data import spec_test_set
from spikebench.engine.train import seed_everything
from spikebench.io import subplots
from spikebench.papers.locality import PAPER_TRIGGER_WHY, POISON_RATES, TABLE_IV
from spikebench.report.markdown import ARCH_ORDER, markdown_table
from spikebench.studies.base import (
    RULE_COLORS,
    StudyContext,
    StudyOutput,
    _ordered_rules,
    _pct,
    _save,
    classifier,
    load_model,
    per_model,
    run_columns,
)


def _backdoor_one(spec, run_dir: Path, params: dict) -> dict:
    """Attack success rate on the triggered source-class test samples, and clean accuracy,
    of one poisoned run."""
    bd = Backdoor(**{"seed": spec.seed, **spec.backdoor})
    test = spec_test_set(spec)
    model = load_model(run_dir)
    trig = triggered_source(test, bd)
    seed_everything(spec.seed)
    pred = predict(classifier(model, spec, test), trig.x.float())
    clean = predict(classifier(model, spec, test), test.x.float())
    return {"asr": float((pred == bd.target).float().mean()),
            "clean_acc": float((clean == test.y).float().mean()), "n_triggered": len(trig)}


def backdoor_study(ctx: StudyContext) -> StudyOutput:
    jobs = [(res.spec, run_dir, {"n": len(spec_test_set(res.spec))})
            for res, run_dir in ctx.done if res.spec.backdoor]
    rows = []
    for (spec, _, params), r in zip(jobs, per_model(ctx, "backdoor", _backdoor_one, jobs),
                                    strict=True):
        bd = Backdoor(**{"seed": spec.seed, **spec.backdoor})
        rows.append({**run_columns(spec), "source": bd.source, "target": bd.target,
                     "rate": bd.rate, **r, "n_test": params["n"]})
    df = pd.DataFrame(rows)
    if df.empty:
        return StudyOutput(["## Backdoor", "", "No finished poisoned runs.", ""])
    _plot_backdoor(df, ctx.out_dir / "backdoor.png")
    triggers = "; ".join(sorted({describe_trigger(Backdoor(**{"seed": s.seed, **s.backdoor}))
                                 for s, _, _ in jobs}))
    pairs = sorted(set(zip(df.source, df.target, strict=True)))
    rates = sorted(set(df.rate))
    mean = df.groupby(["arch", "rule", "rate"])[["clean_acc", "asr"]].mean()
    table = []
    for arch in [a for a in ARCH_ORDER if a in set(df.arch)]:
        for rule in _ordered_rules(df[df.arch == arch].rule):
            row = [arch.upper(), rule]
            paper = TABLE_IV.get((arch, rule))
            for rate in rates:
                if (arch, rule, rate) not in mean.index:
                    row.append("–")
                    continue
                c, a = mean.loc[(arch, rule, rate)]
                cell = f"{_pct(c)} / {_pct(a)}"
                if paper and rate in POISON_RATES:
                    pc, pa = paper[POISON_RATES.index(rate)]
                    cell += f" ({pc:.2f} / {pa:.2f})"
                row.append(cell)
            table.append(row)
    sections = [
        "## Backdoor (Table IV)",
        "",
        f"BadNets: a trigger of {triggers}; at each "
        "poison rate that share of the source class's training samples carries the trigger "
        f"and the target label. ({PAPER_TRIGGER_WHY}) Clean test accuracy / attack success rate "
        "(share of the triggered source-class test samples classified as the target), %, "
        "ours (paper), mean over "
        f"{len(pairs)} (source, target) pair(s): {pairs}; clean accuracy on "
        f"{int(df['n_test'].max())} test samples, ASR on {int(df['n_triggered'].max())} "
        "triggered source-class test samples per pair.",
        "",
        markdown_table(["arch", "rule"] + [f"{r:g}" for r in rates], table),
        "",
        "![backdoor](backdoor.png)",
        "",
        "Findings, as the paper states them and as our numbers say:",
        "",
        *_backdoor_findings(df),
        "",
    ]
    return StudyOutput(sections, {"backdoor": df})


def _plot_backdoor(df: pd.DataFrame, path: Path) -> None:
    fig, axes = subplots(1, 2, figsize=(11, 4))
    for (rule, arch), g in df.groupby(["rule", "arch"]):
        m = g.groupby("rate")[["clean_acc", "asr"]].mean()
        style = "-" if arch == "ff" else "--"
        for ax, col in zip(axes, ("asr", "clean_acc"), strict=True):
            ax.plot(m.index, 100 * m[col], style, marker="o", color=RULE_COLORS.get(rule),
                    label=f"{rule} {arch.upper()}")
    axes[0].set(title="Attack success rate", xlabel="poison rate", ylabel="ASR %")
    axes[1].set(title="Clean test accuracy", xlabel="poison rate", ylabel="accuracy %")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    _save(fig, path)


def describe_trigger(bd: Backdoor) -> str:
    """The trigger in words: its pixels, polarities and steps."""
    pol = {"both": "both polarities", "on": "the ON polarity", "off": "the OFF polarity"}
    steps = "every time step" if bd.period == 1 else f"every {bd.period}th time step"
    return (f"{len(bd.pixels)} pixel(s) {', '.join(map(str, bd.pixels))} set in "
            f"{pol[bd.polarity]} at {steps}")


REC_FF_RATES = (0.1, 0.3)  # the paper: REC has a lower ASR than FF at 10 % and 30 %


def rec_vs_ff_asr(df: pd.DataFrame) -> tuple[int, int] | None:
    """(cells where REC's ASR < FF's, cells compared) over (rule, rate in REC_FF_RATES);
    None without both archs at those rates."""
    sub = df[df.rate.isin(REC_FF_RATES)]
    if not {"ff", "rec"} <= set(sub.arch):
        return None
    m = sub.groupby(["rule", "rate", "arch"])["asr"].mean().unstack("arch").dropna()
    return (int((m["rec"] < m["ff"]).sum()), len(m)) if len(m) else None


def _backdoor_findings(df: pd.DataFrame) -> list[str]:
    out = []
    rec_ff = rec_vs_ff_asr(df)
    if rec_ff is not None:
        wins, total = rec_ff
        out.append(f"- *REC has a lower ASR than FF at 10 % and 30 % poisoning*: REC < FF in "
                   f"{wins} of {total} (rule, rate) cells "
                   f"({'agrees' if wins > total / 2 else 'does not agree'}).")
    top = df.rate.max()
    m = df[df.rate == top].groupby("rule")["asr"].mean()
    if not {"bptt", "decolle"} <= set(m.index):
        return out
    ok = m["decolle"] >= m["bptt"] - 0.1
    return out + [
        f"- *local rules show no robustness advantage under poisoning* (rate {top:g}, mean "
        "ASR over archs): " + ", ".join(f"{r} {_pct(m[r])} %" for r in _ordered_rules(m.index))
        + f" ({'agrees' if ok else 'does not agree'}: DECOLLE's ASR is "
        f"{'not ' if ok else ''}clearly below BPTT's)."]
