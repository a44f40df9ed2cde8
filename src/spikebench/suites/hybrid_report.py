"""The hybrid suites' report: attack and efficiency plots, the efficiency lines and
report.md beside the study's published figures (papers.hybrids)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spikebench.io import atomic_write, save_figure, subplots
from spikebench.models.hybrid import (
    HEADS,
    IMAGE_ENCODERS,
)
from spikebench.papers.hybrids import REFERENCE
from spikebench.report.markdown import markdown_table
from spikebench.suites.hybrid import SQUARE_EPS

NO_WEIGHTS = ("random initialisation (no ImageNet weights: nothing is downloaded; load yours "
              "with --weights)")



def _plot_attacks(df: pd.DataFrame, path: Path) -> None:
    encoders = list(dict.fromkeys(df.encoder))
    fig, axes = subplots(1, len(encoders), figsize=(5 * len(encoders), 3.8), squeeze=False,
                             sharey=True)
    styles = {"default": "-", "lif": "--", "paralif": ":"}
    for ax, enc in zip(axes[0], encoders, strict=True):
        sub = df[(df.encoder == enc) & (df.attack == "fgsm")]
        for head in HEADS:
            m = sub[sub["head"] == head].groupby("eps")["acc"].mean()
            if not m.empty:
                ax.plot(m.index, 100 * m.values, styles[head], marker="o", label=head)
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


def _write_report(out_dir, name, description, specs, table, attacks, notes, wall) -> Path:
    parts = [f"# spikebench report: `{name}`", "", description, "",
             f"Wall time of this invocation: {wall:.0f} s. Tables: `hybrid.csv`, "
             "`hybrid_attacks.csv`; tidy: `results.csv`.", ""]
    if not table.empty:
        rows = []
        for (ds, enc), g in table.groupby(["dataset", "encoder"], sort=False):
            cells = []
            for head in HEADS:
                h = g[g["head"] == head]
                std = (h.test_acc_std.mean() if head != "default" else
                       (h.test_acc.std(ddof=1) if len(h) > 1 else None))
                cells.append(_fmt(h.test_acc.mean(), std) if not h.empty else "–")
            ref = REFERENCE.get((ds, enc))
            rows.append([ds, enc, " / ".join(cells), " / ".join(ref) if ref else "–"])
        spec = specs[0]
        parts += [
            "## Test accuracy (%): default / LIF / ParaLIF head",
            "",
            markdown_table(["data set", "encoder", "ours", "reference"], rows),
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
