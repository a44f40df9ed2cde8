"""Studies: analyses that a suite runs on its trained models after training.

A study is a function ``(StudyContext) -> StudyOutput``: tidy tables (written as
``OUT/<name>.csv``), Markdown sections for ``report.md`` and PNGs beside it. Per-model
results are cached in the run's folder (``RUN/analysis/<study>-<hash>.json``, written
atomically), so an interrupted study resumes and a rerun costs nothing.

- ``fgsm``: Table III: accuracy under FGSM at each epsilon, crafted on the ANN counterpart
  (the paper's choice) and white-box through the SNN's surrogate gradient; PGD and Square
  as stronger checks on a subset.
- ``fisher``: Figure 4: Fisher-information shares per layer (LW, RW) and traces per step.
- ``cka``: Figure 2: layer-by-layer CKA between rules (and an ANN-SNN conversion
  baseline), averaged over seeds; Figure 3: clean-vs-adversarial CKA, REC minus FF.
- ``backdoor``: Table IV: clean accuracy and attack success rate per poison rate.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from spikebench.analysis.attacks import (
    EPSILONS,
    ANNCounterpart,
    Classifier,
    attack_accuracy,
    fgsm,
    predict,
)
from spikebench.analysis.backdoor import Backdoor, triggered_source
from spikebench.analysis.cka import UndefinedCKAError, cka, flatten_time
from spikebench.analysis.conversion import convert, rate_input, train_ann
from spikebench.analysis.fisher import fisher_traces, shares
from spikebench.datasets import SampleData
from spikebench.datasets.encoders import Encoder
from spikebench.errors import ConfigError
from spikebench.harness.reference import POISON_RATES, TABLE_III, TABLE_IV
from spikebench.harness.report import ARCH_ORDER, RULE_ORDER, markdown_table
from spikebench.harness.spec import ExperimentSpec
from spikebench.harness.train import RunResult, load_trained, seed_everything
from spikebench.io import digest, save_figure, subplots, write_json
from spikebench.progress import progress_bar
from spikebench.registry import Registry

log = logging.getLogger(__name__)

RULE_COLORS = {"bptt": "tab:blue", "eprop": "tab:orange", "decolle": "tab:green",
               "conversion": "tab:gray"}
PGD_EPS = (0.01, 0.05)  # PGD: 10 steps of eps/4
SQUARE_EPS = (0.05,)  # Square: 100 queries (ART's implementation loops in Python: slow)


@dataclass
class StudyContext:
    suite: str
    out_dir: Path
    runs: list[tuple[RunResult, Path]]  # every run of the suite with its folder
    data: Callable[[ExperimentSpec], tuple[SampleData, SampleData]]
    paper: bool = False  # the paper's settings instead of this machine's defaults
    n_eval: int | None = None  # test samples analysed (None: the study's default)
    progress: bool = True

    @property
    def done(self) -> list[tuple[RunResult, Path]]:
        return [(r, d) for r, d in self.runs if r.status == "done"]


@dataclass
class StudyOutput:
    sections: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


# -- shared helpers -------------------------------------------------------------------
def cached(run_dir: Path, name: str, params: dict, compute: Callable[[], object]):
    """``compute()``'s JSON result, stored once per (run, study, parameters)."""
    path = Path(run_dir) / "analysis" / f"{name}-{digest(params)}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())["result"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            log.warning("cached analysis %s is unreadable (%s); computing it again", path, err)
    result = compute()
    write_json(path, {"params": params, "result": result})
    return result


def run_columns(spec: ExperimentSpec) -> dict:
    return {"run_id": spec.run_id, "dataset": spec.dataset, "rule": spec.rule,
            "arch": spec.arch, "neuron": spec.neuron, "seed": spec.seed}


def eval_samples(data: SampleData, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test samples (all with None), as float batch-first tensors."""
    if data.task != "sample":
        raise ConfigError("this study needs one label per sample (N-MNIST, images); "
                         f"the data's task is {data.task!r}")
    data = data.subset(n)
    return data.x.float(), data.y


def valid_range(data: SampleData) -> tuple[float, float]:
    """Images [0, 1]; event frames [0, the largest per-bin count in the data]."""
    return (0.0, 1.0) if data.encode is not None else (0.0, float(data.x.max()))


def classifier(model, spec: ExperimentSpec, data: SampleData, eot: int = 8) -> Classifier:
    stochastic = data.encode is not None and getattr(data.encode, "name", "") == "bernoulli"
    return Classifier(model, spec.burn_in, data.encode, eot if stochastic else 1)


def counterpart(model, spec: ExperimentSpec, data: SampleData) -> ANNCounterpart:
    # static images: the counterpart sees the intensities at every step (the expectation
    # of the rate code), event frames: the frames themselves
    encode = Encoder("direct", spec.n_steps) if data.encode is not None else None
    return ANNCounterpart(model, spec.burn_in, encode)


def layer_names(n_hidden: int) -> list[str]:
    return [f"h{k + 1}" for k in range(n_hidden)] + ["out"]


def _ordered_rules(values) -> list[str]:
    values = list(dict.fromkeys(values))
    return [r for r in RULE_ORDER if r in values] + sorted(set(values) - set(RULE_ORDER))


def _pct(v: float) -> str:
    return f"{100 * v:.2f}" if v == v else "–"


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    save_figure(fig, path)


def _bar(items, desc: str, progress: bool):
    return progress_bar(items, desc, progress)


# -- FGSM (Table III) ---------------------------------------------------------------------
def fgsm_study(ctx: StudyContext) -> StudyOutput:
    n = ctx.n_eval if ctx.n_eval else (None if ctx.paper else 1000)
    n_strong = None if ctx.paper else 200
    n_square = None if ctx.paper else 100
    rows, clips = [], set()
    for res, run_dir in _bar(ctx.done, "fgsm", ctx.progress):
        spec = res.spec
        _, test = ctx.data(spec)
        x, y = eval_samples(test, n)
        clip = valid_range(test)
        clips.add(clip)
        params = {"eps": list(EPSILONS), "n": len(x), "n_strong": n_strong,
                  "n_square": n_square, "pgd_eps": list(PGD_EPS),
                  "square_eps": list(SQUARE_EPS), "clip": list(clip)}

        def compute(spec=spec, test=test, x=x, y=y, clip=clip, run_dir=run_dir):
            model, _, _ = load_trained(run_dir)
            model.eval()
            clf = classifier(model, spec, test)
            ann = counterpart(model, spec, test)
            out = []
            for eps in EPSILONS:
                for variant, source in (("ann", ann), ("snn", clf)):
                    seed_everything(spec.seed)
                    r = attack_accuracy(clf, x, y, eps, "fgsm", source, clip)
                    out.append({"attack": "fgsm", "variant": variant, "eps": eps, **r,
                                "n": len(x)})
            for attack, grid, n_att in (("pgd", PGD_EPS, n_strong),
                                        ("square", SQUARE_EPS, n_square)):
                for eps in grid:
                    seed_everything(spec.seed)
                    r = attack_accuracy(clf, x[:n_att], y[:n_att], eps, attack, None, clip)
                    out.append({"attack": attack, "variant": "snn", "eps": eps, **r,
                                "n": len(x[:n_att])})
            return out

        rows += [{**run_columns(spec), **r} for r in cached(run_dir, "fgsm", params, compute)]
    df = pd.DataFrame(rows)
    if df.empty:
        return StudyOutput(["## FGSM", "", "No finished runs to attack.", ""])
    clips = ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in sorted(clips))
    _plot_fgsm(df, ctx.out_dir / "fgsm.png")
    sections = [
        "## FGSM (Table III)",
        "",
        "Accuracy (%) under FGSM crafted on the ANN counterpart (the paper's setting: ReLU "
        "units of rate current/threshold with the SNN's own weights; see "
        "`spikebench.analysis.attacks.ANNCounterpart`), ours / paper, mean over seeds, on "
        f"{int(df[df.attack == 'fgsm']['n'].max())} test samples (paper: all 10000). "
        f"Perturbed inputs are clipped to the valid range {clips} (event frames: [0, the "
        "largest per-bin event count]; images: [0, 1]).",
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


# -- Fisher information (Figure 4) -------------------------------------------------------
def fisher_study(ctx: StudyContext) -> StudyOutput:
    n = ctx.n_eval if ctx.n_eval else (1000 if ctx.paper else 256)
    rows, time_rows, counts = [], [], set()
    for res, run_dir in _bar(ctx.done, "fisher", ctx.progress):
        spec = res.spec
        _, test = ctx.data(spec)
        x, y = eval_samples(test, n)
        counts.add(len(x))

        def compute(spec=spec, test=test, x=x, y=y, run_dir=run_dir):
            model, _, _ = load_trained(run_dir)
            clf = Classifier(model, spec.burn_in, test.encode)
            seed_everything(spec.seed)
            xt = test.encode(x) if test.encode is not None else clf.time_major(x)
            traces = fisher_traces(model, xt, y, spec.burn_in)
            return {"traces": {g: v.tolist() for g, v in traces.items()},
                    "shares": shares(traces)}

        result = cached(run_dir, "fisher", {"n": len(x)}, compute)
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


# -- CKA (Figures 2 and 3) ----------------------------------------------------------------
CKA_BATCH = 256  # minibatch CKA: HSIC_1 summed over batches, normalised once at the end


def cka_study(ctx: StudyContext) -> StudyOutput:
    n = ctx.n_eval if ctx.n_eval else (4096 if ctx.paper else 1000)
    models: dict[str, dict[str, dict[int, torch.nn.Module]]] = {}  # arch -> method -> seed
    specs = {}
    for res, run_dir in _bar(ctx.done, "cka: loading", ctx.progress):
        model, _, _ = load_trained(run_dir)
        model.eval()
        models.setdefault(res.spec.arch, {}).setdefault(res.spec.rule, {})[res.spec.seed] = model
        specs[(res.spec.arch, res.spec.rule, res.spec.seed)] = res.spec
    if not models:
        return StudyOutput(["## CKA", "", "No finished runs.", ""])
    spec0 = next(iter(specs.values()))  # the suite's runs share one data set
    train, test = ctx.data(spec0)
    x, y = eval_samples(test, n)
    seeds = sorted({k[2] for k in specs})
    notes = []
    conv: dict[int, torch.nn.Module] = {}
    if test.encode is None:
        x_rate = rate_input(train.x)
        for seed in _bar(seeds, "cka: ANN-SNN conversion", ctx.progress):
            sizes = next(iter(next(iter(models.values())).values()))
            ann = train_ann(next(iter(sizes.values())).sizes, x_rate, train.y, epochs=5,
                            seed=seed)
            conv[seed] = convert(ann, x_rate).eval()
        acc = [float((predict(Classifier(m), x) == y).float().mean()) for m in conv.values()]
        notes.append("*conversion*: a ReLU network of the FF topology (no hidden biases) "
                     "trained on time-averaged frames (5 epochs, Adam) and converted to IF "
                     "neurons by weight normalisation (99.9th percentile); its test accuracy: "
                     + ", ".join(f"{_pct(a)} %" for a in acc) + ". It is the same FF network "
                     "in the FF and REC panels.")
    else:
        notes.append("no conversion baseline: it is defined here for event frames only")
    rows, undefined = [], []
    for arch, by_rule in models.items():
        methods = {**by_rule, **({"conversion": conv} if conv else {})}
        reps = {m: {s: representations(model, x, test.encode) for s, model in d.items()}
                for m, d in _bar(list(methods.items()), f"cka {arch}", ctx.progress)}
        names = _ordered_rules(methods)
        for i, a in enumerate(names):
            for b in names[i:]:
                if a != b:
                    pairs = [(s, s) for s in sorted(reps[a]) if s in reps[b]]
                else:  # the same rule: consecutive seeds (two initialisations)
                    ss = sorted(reps[a])
                    pairs = list(zip(ss, ss[1:], strict=False))
                for s, t in pairs:
                    la, lb = layer_names(len(reps[a][s]) - 1), layer_names(len(reps[b][t]) - 1)
                    rows += [{"arch": arch, "a": a, "b": b, "seed_a": s, "seed_b": t,
                              "layer_a": la[p], "layer_b": lb[q],
                              "cka": _cka_or_nan(reps[a][s][p], reps[b][t][q], undefined,
                                                 f"{arch} {a}/{b} {la[p]}/{lb[q]}")}
                             for p in range(len(la)) for q in range(len(lb))]
    pairs_df = pd.DataFrame(rows)
    _plot_cka(pairs_df, ctx.out_dir / "cka.png")
    adv_df = _adversarial_cka(ctx, models, specs, test, x, y, undefined)
    if undefined:
        notes.append(f"CKA is undefined (left blank, NaN in the CSV) for {len(undefined)} "
                     "comparison(s) where a layer's representation is constant (a silent "
                     "layer) or the samples are too few: " + "; ".join(undefined[:8])
                     + (" ..." if len(undefined) > 8 else ""))
    sections = [
        "## CKA between learning rules (Figure 2)",
        "",
        f"Linear CKA of the same layer in networks trained by two rules (time steps "
        f"concatenated along features; unbiased minibatch estimator, batches of {CKA_BATCH}), "
        f"{len(x)} test samples, mean over seeds {seeds}. The diagonal compares two seeds of "
        "the same rule (it needs two seeds or more). Full layer-by-layer matrices: `cka.csv`.",
        "",
        *[f"- {note}" for note in notes],
        "",
        _cka_table(pairs_df),
        "",
        "![CKA heatmaps](cka.png)",
        "",
    ]
    if not adv_df.empty and {"ff", "rec"} <= set(adv_df.arch):
        _plot_adv_cka(adv_df, ctx.out_dir / "cka_adversarial.png")
        sections += [
            "## Clean vs adversarial CKA (Figure 3)",
            "",
            "CKA of each layer between its representation of clean and of FGSM inputs "
            "(crafted on the ANN counterpart), REC minus FF, mean over seeds: positive = "
            "the REC network's representation moves less under attack.",
            "",
            _adv_table(adv_df),
            "",
            "![clean vs adversarial CKA](cka_adversarial.png)",
            "",
        ]
    else:
        sections += ["Clean-vs-adversarial CKA (Figure 3) compares REC with FF: it needs both "
                     "(per-model values: `cka_adversarial.csv`).", ""]
    sections += ["Findings, as the paper states them and as our numbers say:", "",
                 *_cka_findings(pairs_df, adv_df), ""]
    return StudyOutput(sections, {"cka": pairs_df, "cka_adversarial": adv_df})


def representations(model, x: torch.Tensor, encode=None, batch: int = 250,
                    seed: int = 0) -> list[torch.Tensor]:
    """[N, T*f] per hidden layer and for the readout: time steps concatenated."""
    clf = Classifier(model)
    parts: list[list[torch.Tensor]] = []
    torch.manual_seed(seed)  # the same rate code for every model compared
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = x[i:i + batch]
            xt = encode(xb) if encode is not None else clf.time_major(xb)
            out, spikes = model(xt, record=True)
            parts.append([flatten_time(s) for s in [*spikes, out]])
    return [torch.cat(p) for p in zip(*parts, strict=True)]


def _cka_or_nan(a: torch.Tensor, b: torch.Tensor, undefined: list[str], what: str) -> float:
    """CKA, or NaN with the comparison named in ``undefined`` where it is not defined."""
    try:
        return cka(a, b, batch_size=CKA_BATCH)
    except UndefinedCKAError:
        undefined.append(what)
        return float("nan")


def _adversarial_cka(ctx, models, specs, test, x, y, undefined) -> pd.DataFrame:
    rows = []
    clip = valid_range(test)
    for arch, by_rule in models.items():
        for rule, by_seed in by_rule.items():
            for seed, model in by_seed.items():
                spec = specs[(arch, rule, seed)]
                clean = representations(model, x, test.encode)
                ann = counterpart(model, spec, test)
                for eps in [e for e in EPSILONS if e > 0]:
                    adv = torch.cat([fgsm(ann, x[i:i + 250], y[i:i + 250], eps, clip)
                                     for i in range(0, len(x), 250)])
                    reps = representations(model, adv, test.encode)
                    names = layer_names(len(reps) - 1)
                    rows += [{"arch": arch, "rule": rule, "seed": seed, "eps": eps,
                              "layer": names[k],
                              "cka": _cka_or_nan(clean[k], reps[k], undefined,
                                                 f"{arch} {rule} s{seed} {names[k]} clean/adv "
                                                 f"eps={eps:g}")}
                             for k in range(len(reps))]
    return pd.DataFrame(rows)


def _cka_mean(df: pd.DataFrame) -> pd.Series:
    """Same-layer CKA per (arch, a, b, layer), mean over seed pairs."""
    same = df[df.layer_a == df.layer_b]
    return same.groupby(["arch", "a", "b", "layer_a"])["cka"].mean()


def _cka_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "(no pairs)"
    mean = _cka_mean(df)
    layers = sorted(set(df.layer_a), key=lambda s: (s == "out", s))
    rows = []
    for (arch, a, b), _ in df.groupby(["arch", "a", "b"], sort=False):
        rows.append([arch.upper(), f"{a} / {b}"]
                    + [f"{mean.get((arch, a, b, la), float('nan')):.3f}" for la in layers])
    return markdown_table(["arch", "pair"] + layers, rows)


def _plot_cka(df: pd.DataFrame, path: Path) -> None:
    if df.empty:
        return
    mean = _cka_mean(df)
    archs = [a for a in ARCH_ORDER if a in set(df.arch)]
    layers = sorted(set(df.layer_a), key=lambda s: (s == "out", s))
    fig, axes = subplots(len(archs), len(layers), squeeze=False,
                             figsize=(3.6 * len(layers), 3.3 * len(archs)))
    for r, arch in enumerate(archs):
        names = _ordered_rules(set(df[df.arch == arch].a) | set(df[df.arch == arch].b))
        for c, layer in enumerate(layers):
            m = np.full((len(names), len(names)), np.nan)
            for i, a in enumerate(names):
                for j, b in enumerate(names):
                    m[i, j] = mean.get((arch, a, b, layer),
                                       mean.get((arch, b, a, layer), np.nan))
            ax = axes[r][c]
            im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
            ax.set_xticks(range(len(names)), names, rotation=45, fontsize=8)
            ax.set_yticks(range(len(names)), names if c == 0 else [], fontsize=8)
            for i in range(len(names)):
                for j in range(len(names)):
                    if m[i, j] == m[i, j]:
                        ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                                color="w" if m[i, j] < 0.6 else "k")
            ax.set_title(f"{arch.upper()} {layer}")
    fig.colorbar(im, ax=axes, shrink=0.6, label="CKA")
    save_figure(fig, path)


def _rec_minus_ff(df: pd.DataFrame) -> pd.Series:
    m = df.groupby(["rule", "arch", "layer", "eps"])["cka"].mean()
    return m.xs("rec", level="arch") - m.xs("ff", level="arch")


def _adv_table(df: pd.DataFrame) -> str:
    if not {"ff", "rec"} <= set(df.arch):
        return "(needs FF and REC runs)"
    diff = _rec_minus_ff(df).dropna()
    eps_values = sorted(set(df.eps))
    rows = [[rule, layer] + [f"{diff.get((rule, layer, e), float('nan')):+.3f}"
                             for e in eps_values]
            for rule in _ordered_rules(df.rule)
            for layer in sorted(set(df.layer), key=lambda s: (s == "out", s))]
    return markdown_table(["rule", "layer"] + [f"{e:g}" for e in eps_values], rows)


def _plot_adv_cka(df: pd.DataFrame, path: Path) -> None:
    layers = sorted(set(df.layer), key=lambda s: (s == "out", s))
    fig, axes = subplots(1, len(layers), figsize=(4 * len(layers), 3.6), squeeze=False,
                             sharey=True)
    diff = _rec_minus_ff(df)
    for ax, layer in zip(axes[0], layers, strict=True):
        for rule in _ordered_rules(df.rule):
            d = diff.xs((rule, layer), level=("rule", "layer")).dropna()
            ax.plot(range(len(d)), d.values, marker="o", color=RULE_COLORS.get(rule),
                    label=rule)
            ax.set_xticks(range(len(d)), [f"{e:g}" for e in d.index])
        ax.axhline(0, color="k", lw=0.8)
        ax.set(title=f"{layer}: CKA(clean, adv) REC - FF", xlabel="epsilon")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    _save(fig, path)


def _cka_findings(pairs: pd.DataFrame, adv: pd.DataFrame) -> list[str]:
    out = []
    if pairs.empty:
        return out
    mean = _cka_mean(pairs)
    for arch in [a for a in ARCH_ORDER if a in set(pairs.arch)]:
        def get(a, b, arch=arch):
            vals = [mean.get((arch, a, b, la), mean.get((arch, b, a, la), np.nan))
                    for la in set(pairs.layer_a) if la != "out"]
            vals = [v for v in vals if v == v]
            return float(np.mean(vals)) if vals else float("nan")

        be, ed, bd = get("bptt", "eprop"), get("eprop", "decolle"), get("bptt", "decolle")
        if all(v == v for v in (be, ed, bd)):
            ok = be > bd and ed > bd
            out.append(f"- *neighbouring localities are similar, BPTT/DECOLLE are not* "
                       f"({arch.upper()}, hidden layers): BPTT/e-prop {be:.3f}, e-prop/DECOLLE "
                       f"{ed:.3f}, BPTT/DECOLLE {bd:.3f} ({'agrees' if ok else 'does not agree'}).")
        conv = [get("conversion", r) for r in ("bptt", "eprop", "decolle")]
        if all(c == c for c in conv) and bd == bd:
            ok = max(conv) < min(be, ed, bd)
            out.append(f"- *conversion differs from all rules* ({arch.upper()}): CKA with "
                       f"BPTT/e-prop/DECOLLE {conv[0]:.3f}/{conv[1]:.3f}/{conv[2]:.3f} "
                       f"({'agrees' if ok else 'does not agree'}).")
    if not adv.empty and {"ff", "rec"} <= set(adv.arch):
        diff = _rec_minus_ff(adv).dropna()
        out.append(f"- *REC keeps higher clean-vs-adversarial CKA than FF*: REC - FF > 0 in "
                   f"{int((diff > 0).sum())} of {len(diff)} (rule, layer, eps) cells "
                   f"({'agrees' if (diff > 0).mean() > 0.5 else 'does not agree'}).")
    return out


# -- backdoor (Table IV) ------------------------------------------------------------------
def backdoor_study(ctx: StudyContext) -> StudyOutput:
    rows = []
    for res, run_dir in _bar(ctx.done, "backdoor", ctx.progress):
        spec = res.spec
        if not spec.backdoor:
            continue
        bd = Backdoor(**{"seed": spec.seed, **spec.backdoor})
        _, test = ctx.data(spec)

        def compute(spec=spec, test=test, bd=bd, run_dir=run_dir):
            model, _, _ = load_trained(run_dir)
            model.eval()
            trig = triggered_source(test, bd)
            seed_everything(spec.seed)
            pred = predict(classifier(model, spec, test), trig.x.float())
            clean = predict(classifier(model, spec, test), test.x.float())
            return {"asr": float((pred == bd.target).float().mean()),
                    "clean_acc": float((clean == test.y).float().mean()),
                    "n_triggered": len(trig)}

        r = cached(run_dir, "backdoor", {"n": len(test)}, compute)
        rows.append({**run_columns(spec), "source": bd.source, "target": bd.target,
                     "rate": bd.rate, **r, "n_test": len(test)})
    df = pd.DataFrame(rows)
    if df.empty:
        return StudyOutput(["## Backdoor", "", "No finished poisoned runs.", ""])
    _plot_backdoor(df, ctx.out_dir / "backdoor.png")
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
        "BadNets: a trigger of 4 pixels set in both polarities at every time step; at each "
        "poison rate that share of the source class's training samples carries the trigger "
        "and the target label. Clean test accuracy / attack success rate (share of the "
        "triggered source-class test samples classified as the target), %, ours (paper), mean "
        f"over {len(pairs)} (source, target) pair(s): {pairs}; clean accuracy on "
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


def _backdoor_findings(df: pd.DataFrame) -> list[str]:
    top = df.rate.max()
    m = df[df.rate == top].groupby("rule")["asr"].mean()
    if not {"bptt", "decolle"} <= set(m.index):
        return []
    ok = m["decolle"] >= m["bptt"] - 0.1
    return [f"- *local rules show no robustness advantage under poisoning* (rate {top:g}, mean "
            f"ASR over archs): " + ", ".join(f"{r} {_pct(m[r])} %" for r in _ordered_rules(m.index))
            + f" ({'agrees' if ok else 'does not agree'}: DECOLLE's ASR is "
            f"{'not ' if ok else ''}clearly below BPTT's)."]


STUDIES: Registry[Callable[[StudyContext], StudyOutput]] = Registry("study")
STUDIES.register("fgsm", fgsm_study)
STUDIES.register("fisher", fisher_study)
STUDIES.register("cka", cka_study)
STUDIES.register("backdoor", backdoor_study)
