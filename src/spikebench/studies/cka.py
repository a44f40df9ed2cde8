"""Layer-by-layer CKA between the trained models of one architecture, of any suite kind
(spiking MLPs, conv SNNs and ANNs, hybrids' spiking heads, through the models' ``Probed``
contract), averaged over seeds. On a suite of spiking MLPs, the locality paper's Figures
2-3: CKA between rules with an ANN-SNN conversion baseline, and clean-vs-adversarial CKA
per layer, REC minus FF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from spikebench.analysis.cka import (
    adversarial_cka,
    cka_or_nan,
    mlp_inputs,
    representations,
)
from spikebench.attacks.art import (
    EPSILONS,
    Classifier,
    fgsm,
    predict,
)
from spikebench.engine.data import spec_data, spec_test_set
from spikebench.engine.spec import ExperimentSpec
from spikebench.io import save_figure, subplots
from spikebench.progress import progress_bar
from spikebench.report.markdown import ARCH_ORDER, RULE_ORDER, markdown_table, ordered
from spikebench.studies.base import (
    RULE_COLORS,
    StudyContext,
    StudyOutput,
    TrainedModel,
    _ordered_rules,
    _pct,
    _save,
    counterpart,
    eval_samples,
    layer_order,
    load_model,
    models_of,
    per_model,
    valid_range,
    variant,
)
from spikebench.studies.conversion_ann import ConversionSpec, data_identity, train_conversion_ann
from spikebench.training.conversion import convert, rate_input

CKA_BATCH = 256  # minibatch CKA: HSIC_1 summed over batches, normalised once at the end
CKA_VERSION = 2  # 2: the stable HSIC (version 1 cached Song's term-by-term values)


def cka_study(ctx: StudyContext) -> StudyOutput:
    n = ctx.n_eval if ctx.n_eval else (4096 if ctx.paper else 1000)
    if ctx.done and ctx.trained is None:
        models_of(ctx, *ctx.done[0], n)  # the error that names the suite
    trained: list[TrainedModel] = []
    for res, run_dir in progress_bar(ctx.done, "cka: loading", ctx.progress):
        trained += ctx.trained(res.spec, run_dir, n)
    if not trained:
        return StudyOutput(["## CKA", "", "No finished runs.", ""])
    # the locality paper's Figures 2-3 on a suite of spiking MLPs: the conversion
    # baseline and clean-vs-adversarial CKA (FGSM on the ANN counterpart) join them
    specs = {(r.spec.arch, r.spec.rule, r.spec.seed): r.spec for r, _ in ctx.done
             if isinstance(r.spec, ExperimentSpec)}
    mlp = len(specs) == len(ctx.done)
    notes = _conversion_baseline(ctx, specs, trained) if mlp else []
    # (data set, model) -> variant (method, stage) -> seed -> (representations, names)
    groups: dict[tuple[str, str], dict[str, dict[int, tuple]]] = {}
    for m in progress_bar(trained, "cka: representations", ctx.progress):
        c = m.columns
        reps = representations(m.model, m.x, m.inputs)
        groups.setdefault((c["dataset"], c["model"]), {}).setdefault(variant(c), {})[
            c["seed"]] = (reps, [*m.model.layer_names(), "out"])
    rows, undefined = [], []
    for (dataset, model), methods in groups.items():
        names = ordered(methods, (*RULE_ORDER, *methods))  # the rules', then run order
        for i, a in enumerate(names):
            for b in names[i:]:
                if a != b:
                    pairs = [(s, s) for s in sorted(methods[a]) if s in methods[b]]
                else:  # the same variant: consecutive seeds (two initialisations)
                    ss = sorted(methods[a])
                    pairs = list(zip(ss, ss[1:], strict=False))
                for s, t in pairs:
                    (ra, la), (rb, lb) = methods[a][s], methods[b][t]
                    rows += [{"suite": ctx.suite, "dataset": dataset, "model": model,
                              "a": a, "b": b,
                              "seed_a": s, "seed_b": t, "layer_a": la[p], "layer_b": lb[q],
                              "cka": _cka_or_nan(ra[p], rb[q], undefined,
                                                 f"{model} {a}/{b} {la[p]}/{lb[q]}")}
                             for p in range(len(la)) for q in range(len(lb))]
    pairs_df = pd.DataFrame(rows)
    _plot_cka(pairs_df, ctx.out_dir / "cka.png")
    adv_df = _adversarial_cka(ctx, specs, len(trained[0].x), undefined) if mlp else pd.DataFrame()
    if undefined:
        notes.append(f"CKA is undefined (left blank, NaN in the CSV) for {len(undefined)} "
                     "comparison(s) where a layer's representation is constant (a silent "
                     "layer) or the samples are too few: " + "; ".join(undefined[:8])
                     + (" ..." if len(undefined) > 8 else ""))
    seeds = sorted({m.columns["seed"] for m in trained})
    what = "learning rules (Figure 2)" if mlp else "models"
    sections = [
        f"## CKA between {what}",
        "",
        f"Linear CKA of the same layer in two trained models of one architecture (time "
        f"steps concatenated along features; unbiased minibatch estimator, batches of "
        f"{CKA_BATCH}), {len(trained[0].y)} test samples, mean over seeds {seeds}. The "
        "diagonal compares two seeds of the same method (it needs two seeds or more). Full "
        "layer-by-layer matrices: `cka.csv`.",
        "",
        *[f"- {note}" for note in notes],
        "",
        _cka_table(pairs_df),
        "",
        "![CKA heatmaps](cka.png)",
        "",
    ]
    if not adv_df.empty and {"ff", "rec"} <= set(adv_df.model):
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
    elif mlp:
        sections += ["Clean-vs-adversarial CKA (Figure 3) compares REC with FF: it needs both "
                     "(per-model values: `cka_adversarial.csv`).", ""]
    findings = _cka_findings(pairs_df, adv_df)
    if findings:
        sections += ["Findings, as the paper states them and as our numbers say:", "",
                     *findings, ""]
    tables = {"cka": pairs_df, **({"cka_adversarial": adv_df} if mlp else {})}
    return StudyOutput(sections, tables)


def _conversion_baseline(ctx: StudyContext, specs: dict, trained: list[TrainedModel]
                         ) -> list[str]:
    """The ANN-SNN conversion baseline of a suite of spiking MLPs on event frames: per
    seed, a ReLU network of the FF topology trained and converted, added to ``trained``
    under every architecture as method ``conversion``; the notes that say what it is."""
    spec0 = next(iter(specs.values()))  # the suite's runs share one data set
    train, test = ctx.data(spec0)
    if test.encode is not None:
        return ["no conversion baseline: it is defined here for event frames only"]
    x_rate = rate_input(train.x)
    sizes = trained[0].model.sizes
    seeds = sorted({k[2] for k in specs})
    ann_specs = [ConversionSpec(sizes, seed=seed, data=data_identity(spec0)) for seed in seeds]
    # trained as tasks of the executor, then read back here (a finished run is skipped)
    ctx.executor.map(_train_conversion, [(a, ctx.runs_dir / a.run_id, spec0)
                                         for a in ann_specs],
                     "cka: ANN-SNN conversion", ctx.progress)
    notes, accs = [], []
    archs = list(dict.fromkeys(m.columns["model"] for m in trained))
    x, y = trained[0].x, trained[0].y
    for ann_spec in ann_specs:
        result, ann = train_conversion_ann(ann_spec, ctx.runs_dir / ann_spec.run_id,
                                           x_rate, train.y, False)
        if result.status != "done":
            notes.append(f"conversion ANN s{ann_spec.seed} {result.status}: {result.message}")
            continue
        snn = convert(ann, x_rate).eval()
        accs.append(float((predict(Classifier(snn), x) == y).float().mean()))
        for arch in archs:
            columns = {**trained[0].columns, "run_id": ann_spec.run_id, "stage": "train",
                       "model": arch, "method": "conversion", "seed": ann_spec.seed}
            trained.append(TrainedModel(columns, snn, x, y, mlp_inputs(snn, None)))
    notes.append("*conversion*: a ReLU network of the FF topology (no hidden biases) "
                 "trained on time-averaged frames (5 epochs, Adam) and converted to IF "
                 "neurons by weight normalisation (99.9th percentile); its test accuracy: "
                 + ", ".join(f"{_pct(a)} %" for a in accs) + ". It is the same FF network "
                 "in the FF and REC panels.")
    return notes


def _cka_or_nan(a: torch.Tensor, b: torch.Tensor, undefined: list[str], what: str) -> float:
    """CKA, or NaN with the comparison named in ``undefined`` where it is not defined."""
    value = cka_or_nan(a, b, batch_size=CKA_BATCH)
    if value != value:
        undefined.append(what)
    return value


def _train_conversion(ann_spec: ConversionSpec, run_dir: Path, spec) -> None:
    """Train (or skip) the conversion baseline's ANN on the inputs of ``spec``'s data."""
    train, _ = spec_data(spec)
    train_conversion_ann(ann_spec, run_dir, rate_input(train.x), train.y, False)


def _adv_cka_one(spec, run_dir: Path, params: dict) -> list[dict]:
    """Clean-vs-FGSM CKA per layer and eps of one trained run."""
    test = spec_test_set(spec)
    x, y = eval_samples(test, params["n"])
    model = load_model(run_dir)
    ann = counterpart(model, spec, test)
    clip = tuple(params["clip"])
    return adversarial_cka(model, lambda xb, yb, eps: fgsm(ann, xb, yb, eps, clip), x, y,
                           params["eps"], mlp_inputs(model, test.encode),
                           batch_size=params["batch"])


def _adversarial_cka(ctx, specs, n: int, undefined) -> pd.DataFrame:
    """Clean-vs-FGSM CKA per layer of every spiking MLP, cached in its run folder."""
    test = ctx.data(next(iter(specs.values())))[1]
    params = {"n": n, "eps": [e for e in EPSILONS if e > 0],
              "clip": list(valid_range(test)), "batch": CKA_BATCH}
    keys = list(specs)
    jobs = [(specs[k], ctx.run_dirs[specs[k].run_id], params) for k in keys]
    rows = []
    for (arch, rule, seed), result in zip(
            keys, per_model(ctx, "cka-adversarial", _adv_cka_one, jobs, version=CKA_VERSION),
            strict=True):
        for r in result:
            if r["cka"] is None or r["cka"] != r["cka"]:
                undefined.append(f"{arch} {rule} s{seed} {r['layer']} clean/adv "
                                 f"eps={r['eps']:g}")
            rows.append({"model": arch, "method": rule, "seed": seed, "eps": r["eps"],
                         "layer": r["layer"],
                         "cka": float("nan") if r["cka"] is None else r["cka"]})
    return pd.DataFrame(rows)


def _cell(v: float) -> str:
    return f"{v:.3f}" if v == v else "–"  # undefined: said in the notes


def _cka_mean(df: pd.DataFrame) -> pd.Series:
    """Same-layer CKA per (model, a, b, layer), mean over seed pairs."""
    same = df[df.layer_a == df.layer_b]
    return same.groupby(["model", "a", "b", "layer_a"])["cka"].mean()


def _cka_table(df: pd.DataFrame) -> str:
    if df.empty:
        return ("(no pairs: CKA compares two trained models of one architecture, two methods "
                "or two seeds: `--seeds 0 1`)")
    mean = _cka_mean(df)
    out = []
    for model in ordered(df.model, ARCH_ORDER):  # one table per layer layout
        sub = df[df.model == model]
        layers = layer_order(sub.layer_a)
        rows = [[model.upper(), f"{a} / {b}"]
                + [_cell(mean.get((model, a, b, la), float("nan"))) for la in layers]
                for (a, b), _ in sub.groupby(["a", "b"], sort=False)]
        header = ["model", "pair"] + layers
        if out and out[-1][0] == header:
            out[-1][1].extend(rows)
        else:
            out.append((header, rows))
    return "\n\n".join(markdown_table(h, r) for h, r in out)


def _plot_cka(df: pd.DataFrame, path: Path) -> None:
    if df.empty:
        return
    mean = _cka_mean(df)
    archs = ordered(df.model, ARCH_ORDER)
    width = max(len(layer_order(df[df.model == a].layer_a)) for a in archs)
    fig, axes = subplots(len(archs), width, squeeze=False,
                         figsize=(3.6 * width, 3.3 * len(archs)))
    for ax in axes.flat:
        ax.set_axis_off()
    for r, arch in enumerate(archs):
        sub = df[df.model == arch]
        names = ordered([*sub.a, *sub.b], (*RULE_ORDER, *sub.a, *sub.b))
        for c, layer in enumerate(layer_order(df[df.model == arch].layer_a)):
            m = np.full((len(names), len(names)), np.nan)
            for i, a in enumerate(names):
                for j, b in enumerate(names):
                    m[i, j] = mean.get((arch, a, b, layer),
                                       mean.get((arch, b, a, layer), np.nan))
            ax = axes[r][c]
            ax.set_axis_on()
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
    m = df.groupby(["method", "model", "layer", "eps"])["cka"].mean()
    return m.xs("rec", level="model") - m.xs("ff", level="model")


def _adv_table(df: pd.DataFrame) -> str:
    if not {"ff", "rec"} <= set(df.model):
        return "(needs FF and REC runs)"
    diff = _rec_minus_ff(df).dropna()
    eps_values = sorted(set(df.eps))
    rows = [[rule, layer] + [f"{diff.get((rule, layer, e), float('nan')):+.3f}"
                             for e in eps_values]
            for rule in _ordered_rules(df.method)
            for layer in sorted(set(df.layer), key=lambda s: (s == "out", s))]
    return markdown_table(["method", "layer"] + [f"{e:g}" for e in eps_values], rows)


def _plot_adv_cka(df: pd.DataFrame, path: Path) -> None:
    layers = sorted(set(df.layer), key=lambda s: (s == "out", s))
    fig, axes = subplots(1, len(layers), figsize=(4 * len(layers), 3.6), squeeze=False,
                             sharey=True)
    diff = _rec_minus_ff(df)
    for ax, layer in zip(axes[0], layers, strict=True):
        for rule in _ordered_rules(df.method):
            d = diff.xs((rule, layer), level=("method", "layer")).dropna()
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
    for arch in [a for a in ("ff", "rec") if a in set(pairs.model)]:
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
    if not adv.empty and {"ff", "rec"} <= set(adv.model):
        diff = _rec_minus_ff(adv).dropna()
        out.append(f"- *REC keeps higher clean-vs-adversarial CKA than FF*: REC - FF > 0 in "
                   f"{int((diff > 0).sum())} of {len(diff)} (rule, layer, eps) cells "
                   f"({'agrees' if (diff > 0).mean() > 0.5 else 'does not agree'}).")
    return out
