"""The locality frontier: accuracy against the cost of a training step (peak memory and
wall time) for every rule and architecture of a locality suite, with each rule's locality
class (what it keeps of the credit assignment in space and in time) and the Pareto front.

Each finished run's trained network takes one training step (its rule, no optimiser step)
on a batch of ``batch_size`` test samples as training feeds them (events stay sparse), all
runs in one fresh process after training (``metrics.stepcost``). The figures are cached in
the run's folder under the machine (host, threads, torch) they were measured on, so another
machine measures them anew."""

from __future__ import annotations

import platform
from pathlib import Path

import pandas as pd
import torch

from spikebench.datasets import time_major_loader
from spikebench.engine.train import load_trained
from spikebench.io import subplots, write_json
from spikebench.learning_rules import RULES
from spikebench.metrics.stepcost import step_costs
from spikebench.report.markdown import ARCH_ORDER, RULE_ORDER, markdown_table, ordered
from spikebench.studies.base import (
    _MISSING,
    RULE_COLORS,
    StudyContext,
    StudyOutput,
    _cache_path,
    _read_cached,
    _save,
)

FRONTIER_VERSION = 1
MARKERS = {"ff": "o", "rec": "s"}


def _final(metrics: list[dict], name: str) -> float:
    values = [m for m in metrics if m["metric"] == name]
    return max(values, key=lambda m: m["epoch"])["value"] if values else float("nan")


def step_job(run_dir: Path, test) -> tuple[dict, dict]:
    """(the cache parameters, the ``metrics.stepcost`` job) of a finished run: its trained
    network and rule on the first training-sized batch of ``test``."""
    model, rule, spec = load_trained(run_dir)
    x, y = next(iter(time_major_loader(test, spec.batch_size, sparse=True)))
    params = {"batch": int(y.shape[-1]), "steps": int(x.shape[0]),
              "threads": torch.get_num_threads(), "host": platform.node(),
              "torch": torch.__version__}
    job = {"model_config": model.config(), "model_state": model.state_dict(),
           "rule": spec.rule, "rule_config": rule.config(), "rule_state": rule.state_dict(),
           "x": x, "y": y}
    return params, job


def measured(ctx: StudyContext) -> list[dict]:
    """One row per finished run: its columns, accuracy, step time and peak memory."""
    rows, todo = [], []
    for res, run_dir in ctx.done:
        params, job = step_job(run_dir, ctx.data(res.spec)[1])
        path = _cache_path(run_dir, "frontier", params, FRONTIER_VERSION)
        cost = _read_cached(path)
        cls = RULES.get(res.spec.rule)
        row = {"run_id": res.spec.run_id, "method": res.spec.rule, "model": res.spec.arch,
               "seed": res.spec.seed, "acc": _final(res.metrics, "test_acc"),
               "space": cls.credit_space, "time": cls.credit_time, **params}
        rows.append(row)
        if cost is _MISSING:
            todo.append((row, path, params, job))
        else:
            row.update(cost)
    costs = step_costs([job for *_, job in todo]) if todo else []
    for (row, path, params, _), cost in zip(todo, costs, strict=True):
        write_json(path, {"params": params, "result": cost})
        row.update(cost)
    return rows


def pareto(costs, accs) -> list[bool]:
    """Which points no other point beats (cost no higher, accuracy no lower, one strictly);
    a point without a cost is on no front."""
    pts = list(zip(costs, accs, strict=True))
    out = []
    for c, a in pts:
        if c is None or c != c:
            out.append(False)
            continue
        out.append(not any(c2 is not None and c2 == c2 and c2 <= c and a2 >= a
                           and (c2 < c or a2 > a) for c2, a2 in pts))
    return out


def frontier_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (rule, arch) of ``df`` (one row per run: method, model, seed, acc, step_ms,
    peak_mb, and the rule's locality class space, time): mean accuracy, step time and peak
    memory over seeds, and whether it lies on either Pareto front."""
    g = df.groupby(["method", "model"], sort=False)
    t = g.agg(acc=("acc", "mean"), step_ms=("step_ms", "mean"),
              peak_mb=("peak_mb", lambda v: v.mean() if v.notna().any() else float("nan")),
              seeds=("seed", "nunique"), space=("space", "first"),
              time=("time", "first")).reset_index()
    t["front_memory"] = pareto(list(t.peak_mb), list(t.acc))
    t["front_time"] = pareto(list(t.step_ms), list(t.acc))
    keys = [(m, a) for m in ordered(t.method, RULE_ORDER) for a in ordered(t.model, ARCH_ORDER)]
    t["_order"] = [keys.index(k) for k in zip(t.method, t.model, strict=True)]
    return t.sort_values("_order").drop(columns="_order").reset_index(drop=True)


def _color(method: str, methods: list[str]):
    if method in RULE_COLORS:
        return RULE_COLORS[method]
    others = [m for m in methods if m not in RULE_COLORS]
    return f"C{(3 + others.index(method)) % 10}"


def plot_frontier(t: pd.DataFrame, path: Path) -> None:
    """Accuracy against peak memory and against step time; points on the front ringed."""
    fig, axes = subplots(1, 2, figsize=(11, 4.2))
    methods = list(dict.fromkeys(t.method))
    panels = ((axes[0], "peak_mb", "front_memory", "peak memory of a step (MB)", "memory"),
              (axes[1], "step_ms", "front_time", "time of a step (ms)", "time"))
    for ax, col, front, label, what in panels:
        for _, r in t.iterrows():
            if r[col] == r[col]:
                ax.scatter(r[col], 100 * r.acc, color=_color(r.method, methods),
                           marker=MARKERS.get(r.model, "^"), s=46, zorder=3,
                           edgecolors="black" if r[front] else "none",
                           label=f"{r.method} {r.model.upper()}")
        on = t[t[front]].sort_values(col)
        if len(on):
            ax.step(on[col], 100 * on.acc, where="post", color="gray", alpha=0.6, zorder=1,
                    label="Pareto front")
        ax.set(xlabel=label, ylabel="test accuracy %", title=f"accuracy vs {what}")
        ax.grid(alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    if handles:
        axes[1].legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    _save(fig, path)


def _num(v: float, fmt: str) -> str:
    return "–" if v is None or v != v else format(v, fmt)


def frontier_markdown(t: pd.DataFrame) -> str:
    """``frontier_table``'s rows as the reports' Markdown table."""
    rows = [[r.method, r.model.upper(), r.space or "not stated", r.time or "not stated",
             _num(100 * r.acc, ".1f"), _num(r.step_ms, ".0f"), _num(r.peak_mb, ".1f"),
             " / ".join(k for k, on in (("memory", r.front_memory), ("time", r.front_time))
                        if on) or "–"]
            for r in t.itertuples()]
    return markdown_table(["rule", "arch", "space", "time", "acc %", "step ms", "peak MB",
                           "on the front"], rows)


def frontier_study(ctx: StudyContext) -> StudyOutput:
    rows = measured(ctx)
    if not rows:
        return StudyOutput(["## Locality frontier", "", "No finished runs.", ""])
    df = pd.DataFrame(rows)
    t = frontier_table(df)
    plot_frontier(t, ctx.out_dir / "frontier.png")
    first = rows[0]
    sections = [
        "## Locality frontier",
        "",
        f"Accuracy (test, last epoch, mean over seeds) against the cost of one training step "
        f"of each trained network: its rule's gradient (no optimiser step) on a batch of "
        f"{first['batch']} test samples x {first['steps']} steps as training feeds them, "
        f"all networks one after the other in one fresh process on {first['host']} "
        f"({first['threads']} threads, torch {first['torch']}). Peak memory: the resident "
        "peak during the step minus the resident size before it (what the rule holds beyond "
        "the model and the batch; Linux only). Space / time: what the rule keeps of the "
        "credit assignment across layers and across steps. On the front: no other rule and "
        "arch is at once cheaper and at least as accurate.",
        "",
        frontier_markdown(t),
        "",
        "![Locality frontier](frontier.png)",
        "",
    ]
    return StudyOutput(sections, {"frontier": df})
