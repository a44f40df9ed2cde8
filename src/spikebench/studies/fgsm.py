"""Table III: accuracy under FGSM at each epsilon, crafted on the ANN counterpart (the
paper's choice) and white-box through the SNN's surrogate gradient; PGD and Square as
stronger checks on a subset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spikebench.attacks.art import (
    EPSILONS,
    attack_accuracy,
)
from spikebench.engine.data import spec_test_set
from spikebench.engine.train import seed_everything
from spikebench.io import subplots
from spikebench.papers.locality import PAPER_FGSM_WHY, TABLE_III
from spikebench.report.markdown import ARCH_ORDER, markdown_table
from spikebench.studies.base import (
    RULE_COLORS,
    StudyContext,
    StudyOutput,
    _ordered_rules,
    _pct,
    _save,
    classifier,
    counterpart,
    eval_count,
    eval_samples,
    load_model,
    per_model,
    run_columns,
    valid_range,
)

PGD_EPS = (0.01, 0.05)  # PGD: 10 steps of eps/4
SQUARE_EPS = (0.05,)  # Square: 100 queries (ART's implementation loops in Python: slow)


def fgsm_study(ctx: StudyContext) -> StudyOutput:
    n = ctx.n_eval if ctx.n_eval else (None if ctx.paper else 1000)
    n_strong = None if ctx.paper else 200
    n_square = None if ctx.paper else 100
    jobs, clips = [], set()
    for res, run_dir in ctx.done:
        test = spec_test_set(res.spec)
        clip = valid_range(test)
        clips.add(clip)
        jobs.append((res.spec, run_dir, {
            "eps": list(EPSILONS), "n": eval_count(test, n), "n_strong": n_strong,
            "n_square": n_square, "pgd_eps": list(PGD_EPS), "square_eps": list(SQUARE_EPS),
            "clip": list(clip)}))
    rows = [{**run_columns(spec), **r}
            for (spec, _, _), result in zip(jobs, per_model(ctx, "fgsm", _attack_one, jobs),
                                            strict=True)
            for r in result]
    df = pd.DataFrame(rows)
    if df.empty:
        return StudyOutput(["## FGSM", "", "No finished runs to attack.", ""])
    clips = ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in sorted(clips))
    frames = " and ".join(sorted({spec.frames for spec, _, _ in jobs}))
    _plot_fgsm(df, ctx.out_dir / "fgsm.png")
    sections = [
        "## FGSM (Table III)",
        "",
        "Accuracy (%) under FGSM crafted on the ANN counterpart (the paper's setting: ReLU "
        "units of rate current/threshold with the SNN's own weights; see "
        "`spikebench.attacks.art.ANNCounterpart`), ours / paper, mean over seeds, on "
        f"{int(df[df.attack == 'fgsm']['n'].max())} test samples (paper: all 10000). "
        f"Perturbed inputs are clipped to the valid range {clips} (event frames: [0, the "
        "largest per-bin event count]; images: [0, 1]).",
        "",
        f"Setting: {frames} event frames. {PAPER_FGSM_WHY}",
        "",
        _attack_table(df[(df.attack == "fgsm") & (df.variant == "ann")], with_paper=True),
        "",
        "White-box FGSM through the SNN's surrogate gradient (accuracy %):",
        "",
        _attack_table(df[(df.attack == "fgsm") & (df.variant == "snn")], with_paper=False),
        "",
        "Stronger checks (white-box, adversarial-robustness-toolbox), accuracy %: PGD (10 "
        f"steps of eps/4) on {int(df[df.attack == 'pgd']['n'].max())} test samples, Square "
        f"(100 queries, gradient-free) on {int(df[df.attack == 'square']['n'].max())}:",
        "",
        _attack_table(df[df.attack.isin(["pgd", "square"])], with_paper=False,
                      by_attack=True),
        "",
        "![FGSM accuracy](fgsm.png)",
        "",
        "Findings, as the paper states them and as our numbers say:",
        "",
        *_fgsm_findings(df),
        "",
    ]
    return StudyOutput(sections, {"fgsm": df})


def _attack_one(spec, run_dir: Path, params: dict) -> list[dict]:
    """FGSM (on the ANN counterpart and white-box), PGD and Square on one trained run."""
    test = spec_test_set(spec)
    x, y = eval_samples(test, params["n"])
    clip = tuple(params["clip"])
    model = load_model(run_dir)
    clf = classifier(model, spec, test)
    ann = counterpart(model, spec, test)
    out = []
    for eps in params["eps"]:
        for variant, source in (("ann", ann), ("snn", clf)):
            seed_everything(spec.seed)
            r = attack_accuracy(clf, x, y, eps, "fgsm", source, clip)
            out.append({"attack": "fgsm", "variant": variant, "eps": eps, **r, "n": len(x)})
    for attack, grid, n_att in (("pgd", params["pgd_eps"], params["n_strong"]),
                                ("square", params["square_eps"], params["n_square"])):
        for eps in grid:
            seed_everything(spec.seed)
            r = attack_accuracy(clf, x[:n_att], y[:n_att], eps, attack, None, clip)
            out.append({"attack": attack, "variant": "snn", "eps": eps, **r,
                        "n": len(x[:n_att])})
    return out


def _attack_table(df: pd.DataFrame, with_paper: bool, by_attack: bool = False) -> str:
    eps_values = sorted(df["eps"].unique())
    header = ["arch", "rule"] + (["attack"] if by_attack else []) + [f"{e:g}" for e in eps_values]
    rows = []
    groups = ["arch", "rule"] + (["attack"] if by_attack else [])
    mean = df.groupby([*groups, "eps"])["acc"].mean()
    for arch in [a for a in ARCH_ORDER if a in set(df.arch)]:
        for rule in _ordered_rules(df[df.arch == arch].rule):
            for attack in (sorted(set(df.attack)) if by_attack else [None]):
                key = (arch, rule, attack) if by_attack else (arch, rule)
                row = [arch.upper(), rule] + ([attack] if by_attack else [])
                paper = TABLE_III.get((arch, rule)) if with_paper else None
                for e in eps_values:
                    v = mean.get((*key, e), float("nan"))
                    cell = _pct(v)
                    if paper is not None and e in EPSILONS:
                        cell += f" / {paper[EPSILONS.index(e)]:.2f}"
                    row.append(cell)
                rows.append(row)
    return markdown_table(header, rows)


def _plot_fgsm(df: pd.DataFrame, path: Path) -> None:
    fig, axes = subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, variant, title in zip(axes, ("ann", "snn"),
                                  ("FGSM on the ANN counterpart", "FGSM white-box (surrogate)"),
                                  strict=True):
        sub = df[(df.attack == "fgsm") & (df.variant == variant)]
        for (rule, arch), g in sub.groupby(["rule", "arch"]):
            m = g.groupby("eps")["acc"].mean()
            ax.plot(range(len(m)), 100 * m.values, "-" if arch == "ff" else "--", marker="o",
                    color=RULE_COLORS.get(rule), label=f"{rule} {arch.upper()}")
            ax.set_xticks(range(len(m)), [f"{e:g}" for e in m.index])
        ax.set(title=title, xlabel="epsilon", ylabel="accuracy %")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    _save(fig, path)


def _mean_acc(df: pd.DataFrame, **sel) -> float:
    m = np.ones(len(df), dtype=bool)
    for k, v in sel.items():
        m &= (df[k] == v).to_numpy()
    return float(df[m]["acc"].mean()) if m.any() else float("nan")


def _fgsm_findings(df: pd.DataFrame) -> list[str]:
    sub = df[(df.attack == "fgsm") & (df.variant == "ann")]
    out = []
    eps_pos = [e for e in EPSILONS if e > 0]
    rules = _ordered_rules(sub.rule)
    if {"ff", "rec"} <= set(sub.arch):
        wins = [(r, e) for r in rules for e in eps_pos
                if _mean_acc(sub, rule=r, arch="rec", eps=e) > _mean_acc(sub, rule=r, arch="ff",
                                                                         eps=e)]
        total = len(rules) * len(eps_pos)
        out.append(f"- *REC keeps more accuracy than FF under FGSM*: REC > FF in "
                   f"{len(wins)} of {total} (rule, eps > 0) cells "
                   f"({'agrees' if len(wins) > total / 2 else 'does not agree'}).")
    top = max(eps_pos)
    if {"bptt", "decolle"} <= set(rules):
        for arch in [a for a in ARCH_ORDER if a in set(sub.arch)]:
            b = _mean_acc(sub, rule="bptt", arch=arch, eps=top)
            d = _mean_acc(sub, rule="decolle", arch=arch, eps=top)
            out.append(f"- *local rules keep more at large eps* ({arch.upper()}, eps={top:g}): "
                       f"DECOLLE {_pct(d)} % vs BPTT {_pct(b)} % "
                       f"({'agrees' if d > b else 'does not agree'}).")
    return out
