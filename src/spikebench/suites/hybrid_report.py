"""The hybrid suites' report: attack and efficiency plots, the efficiency lines and
report.md beside the study's published figures (papers.hybrids)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spikebench.engine.executor import RunResult
from spikebench.engine.results import identity, split_rows, timings_frame, to_frame
from spikebench.io import atomic_write, save_figure, subplots
from spikebench.models.hybrid import (
    HEADS,
    IMAGE_ENCODERS,
)
from spikebench.papers.hybrids import REFERENCE
from spikebench.report.markdown import markdown_table, ordered, params_text
from spikebench.suites.hybrid import SQUARE_EPS, HybridSpec, stage_name

HEAD_NAMES = {"default": "default", "lif": "LIF", "paralif": "ParaLIF"}
NO_WEIGHTS = ("random initialisation (no ImageNet weights: nothing is downloaded; load yours "
              "with --weights)")



def _plot_attacks(df: pd.DataFrame, path: Path) -> None:
    encoders = list(dict.fromkeys(df.encoder))
    fig, axes = subplots(1, len(encoders), figsize=(5 * len(encoders), 3.8), squeeze=False,
                             sharey=True)
    styles = {"default": "-", "lif": "--", "paralif": ":"}
    for ax, enc in zip(axes[0], encoders, strict=True):
        sub = df[(df.encoder == enc) & (df.attack == "fgsm")]
        for head in ordered(df["head"], HEADS):
            m = sub[sub["head"] == head].groupby("eps")["acc"].mean()
            if not m.empty:
                ax.plot(m.index, 100 * m.values, styles.get(head, "-."), marker="o",
                        label=head)
        ax.set(title=f"{enc}: FGSM", xlabel="epsilon", ylabel="accuracy %")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _plot_efficiency(table: pd.DataFrame, path: Path) -> None:
    """Accuracy vs effective SynOps per image, one point per (encoder, head)."""
    fig, ax = subplots(figsize=(6.5, 4.2))
    markers = {"default": "o", "lif": "s", "paralif": "^"}
    for (enc, head), g in table.groupby(["encoder", "head"], sort=False):
        ax.scatter((g.synops_ac + g.synops_mac).mean(), 100 * g.test_acc.mean(),
                   marker=markers.get(head, "x"), label=f"{enc} + {head}")
    ax.set_xscale("log")
    ax.set_xlabel("effective SynOps per test image (MACs + ACs)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    save_figure(fig, path)


def _efficiency_lines(table: pd.DataFrame) -> list[str]:
    rows = []
    for (enc, head), g in table.groupby(["encoder", "head"], sort=False):
        syn = (g.synops_ac + g.synops_mac).mean()
        rows.append([enc, head, _fmt(g.test_acc.mean()), f"{g.synops_mac.mean():.3g}",
                     f"{g.synops_ac.mean():.3g}", f"{g.synops_dense.mean():.3g}",
                     f"{syn / g.synops_dense.mean():.3f}",
                     "–" if g.activation_sparsity.isna().all()
                     else f"{g.activation_sparsity.mean():.4f}",
                     f"{g.membrane_updates.mean():.3g}",
                     f"{g.footprint_bytes.mean() / 2**20:.2f}"])
    return ["## Efficiency (NeuroBench's definitions), per test image", "",
            markdown_table(["encoder", "head", "test acc %", "eff. MACs", "eff. ACs",
                            "dense SynOps", "eff./dense", "activation sparsity (head)",
                            "membrane updates", "footprint MiB"], rows), "",
            "`spikebench.metrics.efficiency.hybrid_workload`: the encoder's Linear, "
            "convolution and attention calls (MACs: pixels and activations are real-valued; "
            "effective = nonzero input and weight pairs, so ReLU zeros save operations), "
            "then the head: the default head's Linear (MACs), or the spiking head's layer "
            "over its T rate-coded steps (ACs: binary input), counted on one encoding per "
            "image. Activation sparsity and membrane updates: the spiking head's neurons "
            "(the encoders' ReLUs are not spiking neurons and are not counted).", "",
            "![accuracy vs SynOps](efficiency.png)", ""]


def _fmt(mean: float, std: float | None = None) -> str:
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.2f}" if std else "")


def head_neurons(specs) -> str:
    """Each spiking head's neuron with every parameter (``SpikingHead``'s: the registry's
    head parameters)."""
    from spikebench.neurons import NEURONS

    heads = dict.fromkeys(h for s in specs for h in s.heads)
    texts = []
    for h in heads:
        entry = NEURONS.get(h)
        texts.append(f"{h} ({params_text(entry.make_params(**entry.head_params))})")
    return "; ".join(texts)


def _write_report(out_dir, name, description, specs, table, attacks, notes, wall) -> Path:
    parts = [f"# spikebench report: `{name}`", "", description, "",
             f"Wall time of this invocation: {wall:.0f} s. Tables: `hybrid.csv`, "
             "`hybrid_attacks.csv`; tidy: `results.csv`.", "",
             f"Spiking heads' neurons in force: {head_neurons(specs)}.", ""]
    if not table.empty:
        rows, heads = [], ordered(table["head"], HEADS)
        for (ds, enc), g in table.groupby(["dataset", "encoder"], sort=False):
            cells = []
            for head in heads:
                h = g[g["head"] == head]
                std = (h.test_acc_std.mean() if head != "default" else
                       (h.test_acc.std(ddof=1) if len(h) > 1 else None))
                cells.append(_fmt(h.test_acc.mean(), std) if not h.empty else "–")
            ref = REFERENCE.get((ds, enc))
            rows.append([ds, enc, " / ".join(cells), " / ".join(ref) if ref else "–"])
        spec = specs[0]
        parts += [
            f"## Test accuracy (%): {' / '.join(HEAD_NAMES.get(h, h) for h in heads)} head",
            "",
            markdown_table(["data set", "encoder", "ours",
                            "reference" if heads == list(HEADS) else
                            "reference (default / LIF / ParaLIF)"], rows),
            "",
            f"Ours: {spec.n_train or 'all'} training and {spec.n_test or 'all'} test images, "
            f"encoder input {spec.image_size or IMAGE_ENCODERS.get(spec.encoder).image_size} px, "
            f"{spec.finetune_epochs} fine-tuning + {spec.head_epochs} head epochs (SGD lr "
            f"{spec.lr:g} {spec.lr_schedule}, momentum {spec.momentum}, weight decay "
            f"{spec.weight_decay:g}), "
            f"{'weights ' + spec.weights if spec.weights else NO_WEIGHTS}"
            f"; spiking heads: mean ± std over {spec.eval_seeds} encodings. Reference: "
            "ImageNet-pretrained encoders at full resolution, full data, 10 + 10 epochs; its "
            "LIF column was really a plain ANN (a defect of the original code).",
            "",
        ]
    if not table.empty and "synops_ac" in table:
        parts += _efficiency_lines(table)
    if not attacks.empty:
        fg = attacks[attacks.attack == "fgsm"]
        eps_values = sorted(set(fg.eps))
        rows = []
        for (enc, head), g in fg.groupby(["encoder", "head"], sort=False):
            m = g.groupby("eps")["acc"].mean()
            rows.append([enc, head] + [_fmt(m.get(e, float("nan"))) for e in eps_values])
        other = attacks[attacks.attack != "fgsm"]
        orows = [[enc, head, attack, _fmt(g.success_rate.mean())]
                 for (enc, head, attack), g in other.groupby(["encoder", "head", "attack"],
                                                             sort=False)]
        n = specs[0].n_attack
        parts += [
            "## Attacks",
            "",
            f"FGSM accuracy (%) on the first {n} test images (pixels in [0, 1]); spiking "
            f"heads are attacked through the straight-through rate code with expectation over "
            f"{specs[0].eot} encodings per query:",
            "",
            markdown_table(["encoder", "head"] + [f"{e:g}" for e in eps_values], rows),
            "",
            f"Success rate (%) over the first {min(specs[0].n_strong, specs[0].n_attack)} test "
            "images that were "
            f"classified correctly before the attack: DeepFool (at most 100 iterations), Square "
            f"(100 queries, eps {SQUARE_EPS}) (adversarial-robustness-toolbox):",
            "",
            markdown_table(["encoder", "head", "attack", "success %"], orows),
            "",
            "![attack curves](hybrid_attacks.png)",
            "",
        ]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    path = out_dir / "report.md"
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(parts)))
    return path


# -- the tables ----------------------------------------------------------------------------
def _final(result: RunResult, metric: str) -> float:
    return next((float(m["value"]) for m in reversed(result.metrics)
                 if m["metric"] == metric), float("nan"))


def _tables(name: str, results: list[RunResult]) -> dict:
    """hybrid.csv, hybrid_attacks.csv, results.csv and timings.csv of the runs so far, and
    the notes on failed runs."""
    rows, attack_rows, tidy, timings, notes = [], [], [], [], []
    for result in results:
        spec, stages = result.spec, result.details.get("stages", {})
        for variant, res in stages.items():
            r, t = stage_rows(name, spec, variant, res, result.sizes)
            tidy, timings = tidy + r, timings + t
        if result.status != "done":
            where = result.details.get("failed", "")
            notes.append(f"{spec.run_id}{f' ({where})' if where else ''}: {result.message}")
        for variant, res_attacks in result.details.get("attacks", {}).items():
            attack_rows.extend({"dataset": spec.dataset, "encoder": spec.encoder,
                                "seed": spec.seed, "head": variant, **r} for r in res_attacks)
            last = max(m["epoch"] for m in stages[variant].metrics)
            tidy += [{**_row_base(name, spec, variant, "done"), "epoch": last, **m}
                     for m in attack_metrics(res_attacks)]
        for variant, metrics in result.details.get("efficiency", {}).items():
            last = max(m["epoch"] for m in stages[variant].metrics)
            tidy += [{**_row_base(name, spec, variant, "done"), "epoch": last,
                      "metric": f"test_{k}", "value": v} for k, v in metrics.items()]
        if result.status == "done":
            for variant, res in stages.items():
                eff = result.details.get("efficiency", {}).get(variant, {})
                rows.append({"suite": name, "run_id": f"{spec.run_id}/{stage_name(variant)}",
                             "dataset": spec.dataset, "encoder": spec.encoder,
                             "head": variant, "seed": spec.seed,
                             "test_acc": _final(res, "test_acc"),
                             "test_acc_std": (0.0 if variant == "default"
                                              else _final(res, "test_acc_std")),
                             **{k: eff.get(k, float("nan")) for k in EFFICIENCY_COLUMNS}})
    return {"hybrid": pd.DataFrame(rows), "attacks": pd.DataFrame(attack_rows),
            "tidy": to_frame(tidy),
            "timings": timings_frame(timings), "notes": notes}


EFFICIENCY_COLUMNS = ("synops_ac", "synops_mac", "synops_dense", "activation_sparsity",
                      "membrane_updates", "connection_sparsity", "footprint_bytes")


def _row_base(name: str, spec: HybridSpec, variant: str, status: str) -> dict:
    """A stage's identifying columns: the encoder fine-tuned with its default head (an ANN),
    or a spiking head trained by BPTT through its rate-coded steps."""
    default = variant == "default"
    return identity(name, f"{spec.run_id}/{stage_name(variant)}", stage_name(variant), spec.dataset,
                    spec.encoder, "none" if default else variant,
                    "finetune" if default else "bptt", spec.seed, status)


def stage_rows(name: str, spec: HybridSpec, variant: str, res: RunResult,
               sizes: dict[str, int]) -> tuple[list[dict], list[dict]]:
    """(result rows, timing rows) of one stage run: its per-epoch metrics, with the
    samples it trained and was tested on at epoch 0."""
    return split_rows(_row_base(name, spec, variant, res.status), res.metrics, sizes)


def attack_metrics(results: list[dict]) -> list[dict]:
    """Attack results as tidy metrics: ``fgsm_acc@EPS``, ``deepfool_success``,
    ``square_success@EPS``."""
    out = []
    for r in results:
        if r["attack"] == "fgsm":
            out.append({"metric": f"fgsm_acc@{r['eps']:g}", "value": r["acc"]})
        else:
            tag = f"@{r['eps']:g}" if r["eps"] else ""
            out.append({"metric": f"{r['attack']}_success{tag}", "value": r["success_rate"]})
    return out
