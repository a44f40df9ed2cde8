"""The transfer study pairs each image model with another seed of its method and with
its run's ANN, and flags a target whose white-box PGD is beaten by the transfer attack
(gradient masking)."""

from pathlib import Path

import pandas as pd
import torch
from torch import nn

from spikebench.engine.executor import RunResult
from spikebench.studies import STUDIES, StudyContext
from spikebench.studies.base import TrainedModel


class Mean(nn.Module):
    """Class 0 iff the mean pixel exceeds 0.5, smoothly (an exact gradient)."""

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True) - 0.5
        return torch.cat([m, -m], 1) * 10


class Step(Mean):
    """The same decision through a hard step: no gradient (masking by construction)."""

    def forward(self, x):
        m = (x.flatten(1).mean(1, keepdim=True) > 0.5).float() - 0.5
        return torch.cat([m, -m], 1) * 10


def test_transfer_pairs_seeds_and_the_ann_and_flags_masking(tmp_path):
    x = torch.cat([torch.full((20, 1, 4, 4), 0.55), torch.full((20, 1, 4, 4), 0.45)])
    y = torch.tensor([0] * 20 + [1] * 20)

    def cols(run, stage, method, neuron, seed):
        return {"suite": "t", "run_id": run, "stage": stage, "dataset": "d", "model": "m",
                "neuron": neuron, "method": method, "seed": seed, "status": "done"}

    runs = {"a0": [TrainedModel(cols("a0", "a", "a", "lif", 0), Step(), x, y)],
            "a1": [TrainedModel(cols("a1", "a", "a", "lif", 1), Step(), x, y)],
            "c0": [TrainedModel(cols("c0/ann", "ann", "c", "none", 0), Mean(), x, y),
                   TrainedModel(cols("c0/finetune", "c", "c", "dlif", 0), Step(), x, y)]}

    class Spec:
        def __init__(self, run_id):
            self.run_id, self.eps, self.pgd_steps, self.eot = run_id, 0.1, 5, 1

    ctx = StudyContext("t", tmp_path, [(RunResult(Spec(r), "done", []), Path(r))
                                       for r in runs], data=None, progress=False,
                       trained=lambda spec, run_dir, n: runs[spec.run_id])
    out = STUDIES.get("transfer")(ctx)
    df = out.tables["transfer"]
    assert set(zip(df.variant, df.source, df.source_seed, strict=True)) == {
        ("a", "seed", 1), ("a", "seed", 0), ("c", "ann", 0)}
    assert (df.white_box == 1.0).all()  # a hard step: white-box PGD sees no gradient
    ann = df[df.source == "ann"].iloc[0]
    assert ann.transfer == 0.0 and ann.masking  # the smooth ANN's PGD crosses the step
    assert not df[df.source == "seed"].masking.any()  # another step: no gradient either
    assert "## Transfer attacks" in out.sections[0]
    assert isinstance(df, pd.DataFrame) and list(df.columns[:8]) == [
        "suite", "run_id", "stage", "dataset", "model", "neuron", "method", "seed"]


def test_models_of_one_seed_that_differ_in_another_setting_are_never_paired(tmp_path):
    """Another T (or coding) of the same method is another model, not an independent copy
    of it: with one seed there is no "seed" source (the report says it needs two)."""
    x, y = torch.full((8, 1, 4, 4), 0.55), torch.zeros(8, dtype=torch.long)

    class Spec:
        def __init__(self, run_id, steps, seed):
            self.run_id, self.steps, self.seed = run_id, steps, seed
            self.eps, self.pgd_steps, self.eot = 0.1, 2, 1

    def model(run, seed):
        return TrainedModel({"suite": "t", "run_id": run, "stage": "a", "dataset": "d",
                             "model": "m", "neuron": "lif", "method": "a", "seed": seed,
                             "status": "done"}, Mean(), x, y)

    specs = [Spec("T2", 2, 0), Spec("T4", 4, 0), Spec("T4s1", 4, 1)]
    runs = {"T2": [model("T2", 0)], "T4": [model("T4", 0)], "T4s1": [model("T4s1", 1)]}
    ctx = StudyContext("t", tmp_path, [(RunResult(s, "done", []), Path(s.run_id))
                                       for s in specs], data=None, progress=False,
                       trained=lambda spec, run_dir, n: runs[spec.run_id])
    df = STUDIES.get("transfer")(ctx).tables["transfer"]
    assert set(zip(df.run_id, df.source_seed, strict=True)) == {("T4", 1), ("T4s1", 0)}
    one_seed = StudyContext("t", tmp_path, [(RunResult(s, "done", []), Path(s.run_id))
                                            for s in specs[:2]], data=None, progress=False,
                            trained=lambda spec, run_dir, n: runs[spec.run_id])
    assert "No pairs" in "\n".join(STUDIES.get("transfer")(one_seed).sections)
