"""Transfer (black-box) attacks between the trained image models of a suite: PGD crafted
on a source model, scored on the target (HIRE-SNN's headline protocol: the source is an
independently trained model of the same method, another seed; and the ANN a converted
SNN came from). Beside each, the white-box PGD of the target itself with the same
budget: a transfer attack that beats it is a sign of gradient masking (Athalye et al.
2018), flagged by the two-standard-error rule.

Sources per target: ``seed`` (the same method at the next seed, cyclically; needs two
seeds or more: ``--seeds 0 1``) and ``ann`` (an ANN of the same run, where there is one).
Models that take another input than the images (spiking MLPs on event frames, hybrids'
heads on features) are left out, said in the report.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass

import pandas as pd
import torch

from spikebench.attacks.diagnostics import exceeds
from spikebench.attacks.ensemble import Routed, correct, is_stochastic
from spikebench.attacks.perturb import pgd
from spikebench.io import digest
from spikebench.report.markdown import markdown_table, pct
from spikebench.studies.base import (
    StudyContext,
    StudyOutput,
    TrainedModel,
    models_of,
    schema_columns,
    variant,
)


def _all_but_the_seed(spec) -> str:
    """What makes a run apart from its seed: two runs that differ only in it are
    independently trained copies of one model (another T or coding is another model)."""
    fields = asdict(spec) if is_dataclass(spec) else dict(vars(spec))
    return digest({k: v for k, v in fields.items() if k not in ("seed", "run_id")})


def _sources(models: list[TrainedModel], key=None) -> list[tuple[TrainedModel, TrainedModel,
                                                                 str]]:
    """(target, source, kind) pairs; ``key(m)``: the model's run apart from its seed
    (``seed`` sources are the same key at another seed)."""
    pairs = []
    by_variant: dict[tuple, list[TrainedModel]] = {}
    for m in models:
        group = (variant(m.columns), m.columns.get("model"), key(m) if key else None)
        by_variant.setdefault(group, []).append(m)
    for group in by_variant.values():
        group = sorted(group, key=lambda m: m.columns["seed"])
        if len(group) > 1:
            pairs += [(t, group[(k + 1) % len(group)], "seed") for k, t in enumerate(group)]
    for t in models:
        base = t.columns["run_id"].split("/")[0]
        pairs += [(t, s, "ann") for s in models if s is not t and s.columns["neuron"] == "none"
                  and s.columns["run_id"].split("/")[0] == base and t.columns["neuron"] != "none"]
    return pairs


def _accuracy(target: TrainedModel, source: TrainedModel, eps: float, steps: int,
              eot: int) -> float:
    """The target's accuracy on PGD crafted through the source's own surrogate."""
    k = eot if is_stochastic(source.model) else 1
    x, y = target.x, target.y
    adv = torch.cat([pgd(Routed(source.model, "surrogate", k), x[i:i + 128], y[i:i + 128],
                         eps, steps, judge=source.model) for i in range(0, len(x), 128)])
    return float(correct(target.model, adv, y).float().mean())


def transfer_study(ctx: StudyContext) -> StudyOutput:
    n = ctx.n_eval if ctx.n_eval else 300
    if ctx.done and ctx.trained is None:
        models_of(ctx, *ctx.done[0], n)  # the error that names the suite
    models, specs = [], {}
    for res, run_dir in ctx.done:
        for m in ctx.trained(res.spec, run_dir, n):
            if m.inputs is None:
                models.append(m)
                specs[id(m)] = res.spec
    head = ["## Transfer attacks", ""]
    if not models:
        return StudyOutput(head + ["No image models to attack (the suite's models take event "
                                   "frames or features).", ""])
    spec0 = specs[id(models[0])]  # the suite's attack budget
    eps, steps, eot = (getattr(spec0, "eps", 0.1), getattr(spec0, "pgd_steps", 7),
                       getattr(spec0, "eot", 4))
    rows = []
    for target, source, kind in _sources(models, lambda m: _all_but_the_seed(specs[id(m)])):
        torch.manual_seed(target.columns["seed"])
        white = _accuracy(target, target, eps, steps, eot)
        torch.manual_seed(target.columns["seed"])
        moved = _accuracy(target, source, eps, steps, eot)
        rows.append({**schema_columns(ctx.suite, target.columns),
                     "variant": variant(target.columns), "source": kind,
                     "source_variant": variant(source.columns),
                     "source_seed": source.columns["seed"], "eps": eps, "n": len(target.y),
                     "white_box": white, "transfer": moved,
                     "masking": exceeds(white, moved, len(target.y))})
    df = pd.DataFrame(rows)
    if df.empty:
        return StudyOutput(head + ["No pairs: a transfer needs two seeds of a method "
                                   "(`--seeds 0 1`) or a conversion run's ANN.", ""], {})
    table = [[r.variant, f"s{r.seed}", f"{r.source} ({r.source_variant} s{r.source_seed})",
              pct(r.white_box), pct(r.transfer), "yes" if r.masking else "no"]
             for r in df.itertuples()]
    return StudyOutput(head + [
        f"Accuracy (%) of each model under PGD-{steps} at eps {eps:g} crafted on a source "
        "model (its own surrogate) beside the white-box PGD of the model itself with the same "
        f"budget, on its first {int(df.n.iloc[0])} test images. *Masking*: the transfer "
        "attack beats the white-box one by more than two standard errors.", "",
        markdown_table(["model", "seed", "source", "white-box PGD", "transfer PGD",
                        "masking"], table), ""], {"transfer": df})
