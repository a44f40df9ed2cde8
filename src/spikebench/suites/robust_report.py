"""The robust suite's report: robustness-vs-eps and DLIF-gain plots, the findings each
paper claims, tested against our figures, report.md, and the tables (robust.csv, the
results schema's rows, the DLIF gains)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spikebench.attacks.diagnostics import LEGEND, flags
from spikebench.attacks.ensemble import protocol
from spikebench.engine.executor import RunResult
from spikebench.engine.results import identity, split_rows, timings_frame, to_frame
from spikebench.io import atomic_write, save_figure, subplots
from spikebench.report.markdown import markdown_table, params_text, pct, resolvable
from spikebench.suites.robust import METHODS, MODEL_ORDER, RobustSpec
from spikebench.suites.robust_methods import model_names, model_role


def strongest_route(g: pd.DataFrame) -> str:
    """The gradient route whose PGD leaves the model the lowest accuracy, with it (the
    first such route on a tie; an ANN has one route, its exact gradient)."""
    cols = [c for c in g.columns if c.startswith("pgd[") and g[c].notna().any()]
    if not cols:
        return "–"
    best = min(cols, key=lambda c: g[c].mean())
    return f"`{best[4:-1]}` ({pct(g[best].mean())})"


def _checks(g: pd.DataFrame) -> str:
    """The masking checks that fire for a model (``attacks.diagnostics``), over its seeds'
    mean; "none" where none does."""
    row = g.mean(numeric_only=True).to_dict()
    fired = flags(row, int(g.n.sum()))
    return "; ".join(fired) if fired else "none"


def _ordered_models(df: pd.DataFrame) -> list[str]:
    models = list(dict.fromkeys(df.model))
    return [m for m in MODEL_ORDER if m in models] + [m for m in models if m not in MODEL_ORDER]


def _plot_eps(df: pd.DataFrame, spec: RobustSpec, path: Path) -> None:
    fig, ax = subplots(figsize=(6.5, 4.2))
    for model in _ordered_models(df):
        g = df[df.model == model]
        eps = [0.0, *spec.eps_sweep]
        acc = [g["clean"].mean()] + [g[f"pgd@{e:g}"].mean() for e in spec.eps_sweep]
        ax.plot(eps, [100 * a for a in acc], marker="o", label=model)
        ax.scatter([spec.eps], [100 * g["ensemble"].mean()], marker="x", color="k", zorder=3)
    ax.set_xlabel("L-inf epsilon (pixels in [0, 1])")
    ax.set_ylabel("accuracy % (PGD, own surrogate; x: ensemble)")
    ax.set_title(f"{spec.dataset}: PGD-{spec.pgd_steps}, T={spec.steps}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    save_figure(fig, path)


def _plot_gains(df: pd.DataFrame, path: Path) -> None:
    """DLIF's learnt a_l[t] per layer over the time steps (as Ding et al.'s Figure 4)."""
    models = list(dict.fromkeys(df.model))
    fig, axes = subplots(1, len(models), figsize=(4.5 * len(models), 3.5), squeeze=False,
                         sharey=True)
    for ax, model in zip(axes[0], models, strict=True):
        g = df[df.model == model].groupby(["layer", "t"])["a"].mean()
        for layer in sorted({k for k, _ in g.index}):
            ax.plot(g.loc[layer].index, g.loc[layer].values, marker="o", label=f"layer {layer}")
        ax.axhline(1.0, color="gray", lw=0.8, ls=":")
        ax.set(title=f"{model}: DLIF a_l[t]", xlabel="time step t", ylabel="a_l[t]")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


# (rho 0, rho 1, what stays fixed): the MS-MPPD ablation's pairs
RHO_PAIRS = (("at", "lif-mppd-at", "LIF, adversarial training"),
             ("lif-gauss", "lif-mppd-gauss", "LIF, Gaussian noise"),
             ("dlif-at0", "dlif-at", "DLIF, adversarial training; Ding: PGD-10 29.06 -> 37.55"),
             ("gauss", "dlif-gauss", "DLIF, Gaussian noise"))


def findings(df: pd.DataFrame, n: int) -> list[str]:
    """What the numbers say about the studies' questions, with a two-standard-error rule
    (binomial, n attacked images) for calling a difference."""
    m = df.groupby("model").mean(numeric_only=True)
    out = []

    def differ(a: float, b: float) -> bool:
        return resolvable(a, b, n)

    def change(a, b) -> str:
        """What going from model a to model b does to the ensemble accuracy, in words."""
        verdict = ("raises" if b.ensemble > a.ensemble and differ(a.ensemble, b.ensemble)
                   else "lowers" if differ(a.ensemble, b.ensemble) else
                   "does not change (beyond two standard errors)")
        return (f"{verdict} the ensemble accuracy: {pct(a.ensemble)} -> {pct(b.ensemble)} % "
                f"(PGD {pct(a.pgd)} -> {pct(b.pgd)} %, clean {pct(a.clean)} -> "
                f"{pct(b.clean)} %).")

    conversions = [k for k in dict.fromkeys(df.method) if METHODS.get(k).neuron == "conversion"]
    for method in conversions:
        names = model_names(method)
        if not set(names.values()) <= set(m.index):
            continue
        a, c, f = (m.loc[names[k]] for k in ("ann", "converted", "conversion"))
        kept = ("keeps" if not differ(a.pgd, c.pgd) or c.pgd > a.pgd else "does not keep")
        out.append(
            f"Conversion ({method}) {kept} the ANN's robustness: PGD accuracy "
            f"{pct(a.pgd)} % (AT ANN) "
            f"-> {pct(c.pgd)} % (converted) -> {pct(f.pgd)} % (fine-tuned); clean "
            f"{pct(a.clean)} -> {pct(c.clean)} -> {pct(f.clean)} %. Against the ensemble "
            f"of gradient routes the SNNs keep {pct(c.ensemble)} and {pct(f.ensemble)} % "
            f"(the ANN {pct(a.ensemble)} %).")
    ablation = any(METHODS.get(k).ablation for k in m.index if k in METHODS)
    for rho0, rho1, what in RHO_PAIRS if ablation else ():  # the robust-ablation suite
        if {rho0, rho1} <= set(m.index):
            out.append(f"rho 0 -> 1 at fixed neuron ({what}) "
                       + change(m.loc[rho0], m.loc[rho1]))
    if {"gauss", "dlif-gauss"} <= set(m.index):
        g, d = m.loc["gauss"], m.loc["dlif-gauss"]
        verdict = ("helps" if d.ensemble > g.ensemble and differ(d.ensemble, g.ensemble) else
                   "hurts" if differ(d.ensemble, g.ensemble) else
                   "makes no difference we can resolve")
        out.append(
            f"MS-MPPD beyond noise training {verdict}: ensemble accuracy {pct(g.ensemble)} % "
            f"(Gaussian, rho 0) vs {pct(d.ensemble)} % (rho 1); PGD {pct(g.pgd)} vs "
            f"{pct(d.pgd)} %, clean {pct(g.clean)} vs {pct(d.clean)} %, Gaussian noise "
            f"{pct(g.gaussian)} vs {pct(d.gaussian)} %.")
    if {"dlif-at", "dlif-at-reg"} <= set(m.index):
        out.append("SNN-RAT's orthogonality update on DLIF + MS-MPPD AT (AT+Reg; Ding: PGD-7 "
                   "49.02 with it on VGG-11) " + change(m.loc["dlif-at"], m.loc["dlif-at-reg"]))
    if {"at", "dlif-at"} <= set(m.index):
        a, d = m.loc["at"], m.loc["dlif-at"]
        out.append(f"DLIF + MS-MPPD with adversarial training vs LIF adversarial training: "
                   f"ensemble {pct(d.ensemble)} vs {pct(a.ensemble)} %, PGD {pct(d.pgd)} vs "
                   f"{pct(a.pgd)} %, clean {pct(d.clean)} vs {pct(a.clean)} % (neuron and "
                   "regulariser change together).")
    gap = [(k, r.pgd - r.ensemble) for k, r in m.iterrows() if "pgd" in r]
    worst = max(gap, key=lambda kv: kv[1], default=None)
    if worst is not None:
        out.append(f"One gradient route overstates robustness by up to "
                   f"{100 * worst[1]:.1f} points ({worst[0]}: PGD through its own surrogate "
                   "vs the per-sample ensemble).")
    if "square" in m:
        masked = [k for k, r in m.iterrows() if differ(r.square, min(r.fgsm, r.pgd))
                  and r.square < min(r.fgsm, r.pgd)]
        out.append("Gradient masking check (Square below FGSM and PGD): "
                   + (", ".join(masked) + " — their gradient attacks are unreliable"
                      if masked else "no model is flagged."))
    return out


def neurons_in_force(specs) -> str:
    """Each method's neurons with every parameter (``neuron_params``), e.g. "at: lif
    (leak 0.99, threshold 1, reset zero, surrogate triangle, ...)"; ANNs have none."""
    from spikebench.suites.robust_methods import METHODS, neuron_params

    by_text: dict[str, list[str]] = {}  # methods with the same neurons share one entry
    for s in specs:
        kind = METHODS.get(s.method).neuron if s.method in METHODS else "lif"
        text = f"{kind} ({params_text(neuron_params(s, kind))})"
        if s.method not in by_text.setdefault(text, []):
            by_text[text].append(s.method)
    return "; ".join(f"{', '.join(m)}: {t}" for t, m in by_text.items())


def _write_report(out_dir, name, description, specs, df, notes, wall, runs) -> Path:
    spec = specs[0]
    parts = [f"# spikebench report: `{name}`", "", description, "",
             f"Wall time of this invocation: {wall:.0f} s. Tables: `robust.csv` (a row per "
             "model), tidy: `results.csv`.", "",
             f"What ran: data set `{spec.dataset}` ({spec.data_dir or 'embedded'}), "
             f"{runs[0].sizes.get('n_train', '?') if runs else '?'} training / "
             f"{runs[0].sizes.get('n_test', '?') if runs else '?'} test images, arch "
             f"`{spec.arch}`, T = {spec.steps} (direct input), {spec.epochs} epochs "
             f"(conversion: {spec.ann_epochs} ANN + {spec.finetune_epochs} fine-tuning), "
             f"SGD lr {spec.lr:g} cosine, batch {spec.batch_size}, seeds "
             f"{sorted({s.seed for s in specs})}. Training eps {spec.eps_train:g}, sigma "
             f"{spec.sigma:g}, rho {spec.rho:g}.", "",
             f"Neurons in force: {neurons_in_force(specs)}.", ""]
    if not df.empty:
        rows = []
        for model in _ordered_models(df):
            g = df[df.model == model]
            method = METHODS.get(g.method.iloc[0])
            role = model_role(g.method.iloc[0], model)
            what = (method.description if role in (None, "conversion")
                    else {"ann": "the adversarially trained ANN (base of conversion)",
                          "converted": "the converted SNN before fine-tuning"}[role])
            ref = method.reference if role in (None, "conversion") else "–"
            rows.append([model, what] + [pct(g[c].mean()) for c in
                                         ("clean", "fgsm", "pgd", "ensemble", "square",
                                          "gaussian")]
                        + [strongest_route(g), _checks(g),
                           f"{g.spikes_per_image.mean():.0f}", ref])
        n = int(df.n.iloc[0])
        parts += [
            f"## Accuracy (%) under attack, eps = {spec.eps:g}",
            "",
            markdown_table(["model", "training", "clean", "FGSM", f"PGD-{spec.pgd_steps}",
                            "ensemble", "Square", "Gaussian", "strongest route (PGD %)",
                            "masking checks", "spikes / image", "papers (CIFAR-10, VGG)"],
                           rows),
            "",
            f"On the first {n} test images. FGSM and PGD-{spec.pgd_steps} (uniform start, "
            f"step 2.5 eps / {spec.pgd_steps}) through each model's own training surrogate; "
            f"{protocol(spec)}; Gaussian: "
            f"sigma {spec.sigma:g}, clipped. ANN: one route (exact gradients). The papers' "
            "figures are CIFAR-10 at eps 8/255 with VGG-11 (VGG5 where said), not comparable "
            "in value; they show the direction a defence should move. Eps for Fashion-MNIST "
            "is the suite's choice (none of the papers gives one). " + LEGEND + ".",
            "",
            "![robustness vs eps](robust_eps.png)",
            "",
            "## Findings",
            "",
        ] + [f"- {f}" for f in findings(df, n)] + [""]
        parts += _gains_lines(runs)
        times = [(r.spec.method, r.details.get("train_s"), r.details.get("attack_s"))
                 for r in runs if r.status == "done"]
        parts += ["Wall time per method (this invocation; 0 where reused): " + "; ".join(
            f"{m} {t or 0:.0f} s training + {a or 0:.0f} s attacks" for m, t, a in times), ""]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    path = out_dir / "report.md"
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(parts)))
    return path


def _gains_lines(runs) -> list[str]:
    rows = [[f"{model} (seed {r.spec.seed})", str(k), " ".join(f"{a:.3f}" for a in values)]
            for r in runs for model, layers in r.details.get("gains", {}).items()
            for k, values in enumerate(layers)]
    if not rows:
        return []
    return ["## DLIF's learnt input gains a_l[t] (Ding et al.'s Figure 4)", "",
            markdown_table(["model", "layer", "a_l[t], t = 0 ... T-1"], rows), "",
            "Initialised to 1; saved with each checkpoint (`gain` of every neuron layer) and "
            "in `dlif_gains.csv`.", "", "![DLIF gains](dlif_gains.png)", ""]


# -- the tables ----------------------------------------------------------------------------
STAGE_NAMES = {"ann": "ann", "conversion": "finetune"}  # conversion's stage folders
MODEL_STAGE = {"ann": "ann", "converted": "conversion", "conversion": "conversion"}


def _model_run_id(spec, model: str) -> str:
    """The run id of the stage that trained ``model`` (conversion: ``<id>/ann``, ...)."""
    role = model_role(spec.method, model)
    return spec.run_id + (f"/{STAGE_NAMES[MODEL_STAGE[role]]}" if role else "")


def _row_base(name: str, spec, model: str, run_id: str, status: str) -> dict:
    """A model's identifying columns: stage ``train``, or a conversion's model by its role
    (``ann``, ``converted``, ``conversion``: neuron ``none``, then ``if``)."""
    neuron, stage = METHODS.get(spec.method).neuron, "train"
    if neuron == "conversion":
        role = model if model in MODEL_STAGE else model_role(spec.method, model)
        neuron, stage = ("none" if role == "ann" else "if"), role
    return identity(name, run_id, stage, spec.dataset, spec.arch, neuron, spec.method,
                    spec.seed, status)


def _tables(name: str, results: list[RunResult]) -> dict:
    rows, tidy, timings, notes = [], [], [], []
    for result in results:
        spec, stages = result.spec, result.details.get("stages", {})
        for model, res in stages.items():
            conversion = METHODS.get(spec.method).neuron == "conversion"
            stage = STAGE_NAMES.get(model) if conversion else None
            base = _row_base(name, spec, model, spec.run_id + (f"/{stage}" if stage else ""),
                             res.status)
            r, t = split_rows(base, res.metrics, result.sizes)
            tidy, timings = tidy + r, timings + t
        if result.status != "done":
            notes.append(f"{spec.run_id}: {result.message}")
            continue
        for model, ev in result.details.get("evaluation", {}).items():
            role = model_role(spec.method, model)
            trained_by = stages[MODEL_STAGE[role] if role else model]
            last = max((m["epoch"] for m in trained_by.metrics), default=0)
            base = _row_base(name, spec, model, _model_run_id(spec, model), "done")
            tidy += [{**base, "epoch": last if role != "converted" else 0,
                      "metric": f"robust_{k}", "value": v} for k, v in ev.items()]
            rows.append({"suite": name, "run_id": base["run_id"], "dataset": spec.dataset,
                         "method": spec.method, "model": model, "seed": spec.seed, **ev})
    gains = [{"model": model, "seed": r.spec.seed, "layer": k, "t": t, "a": a}
             for r in results for model, layers in r.details.get("gains", {}).items()
             for k, values in enumerate(layers) for t, a in enumerate(values)]
    return {"robust": pd.DataFrame(rows), "tidy": to_frame(tidy),
            "timings": timings_frame(timings), "notes": notes, "gains": pd.DataFrame(gains)}
