"""Adding a rule, a data set, a study and a suite is one definition plus one registry line
each (a neuron: tests/test_conformance.py); here all four are defined in the test only and
run end to end through the one pipeline."""

import pandas as pd
import pytest
import torch

from spikebench.datasets import DATASETS, DatasetInfo, SampleData
from spikebench.learning_rules import RULES, LearningRule, StepOutput, objective
from spikebench.learning_rules.base import count_correct
from spikebench.studies import STUDIES, StudyOutput
from spikebench.suites import SuiteOptions, run_suite
from spikebench.suites.base import SUITES, Suite
from spikebench.suites.locality import SNNKind, locality_grid


class ReadoutOnly(LearningRule):
    """Trains the readout only (an extreme of locality): hidden weights get zero gradients."""

    name = "readout-only"

    def backward(self, model, x, y, update=None) -> StepOutput:
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            _, spikes = model(x, record=True)
        state_y = torch.zeros(x.shape[1], model.sizes[-1])
        outs = []
        for s_t in spikes[-1]:
            state_y = model.readout.step(s_t, state_y)
            outs.append(state_y)
        out = torch.stack(outs)
        loss = objective(out, y, self.burn_in, self.loss)
        loss.backward()
        for p in model.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        correct, count = count_correct(out.detach(), y, self.burn_in)
        return StepOutput(loss.item(), out.detach(), correct, count)


def toy_events(split, root, opts):
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    n, steps = 40, opts.get("n_steps", 6)
    y = torch.arange(n) % 10
    x = (torch.rand(n, steps, 2, 34, 34, generator=g) < 0.05).to(torch.uint8)
    for k in range(n):  # a class-dependent bar
        x[k, :, :, 3 * int(y[k]), :] = 1
    return SampleData(x, y, classes=10)


def count_study(ctx) -> StudyOutput:
    done = len(ctx.done)
    return StudyOutput(["## Count", "", f"{done} finished model(s).", ""],
                       {"count": pd.DataFrame([{"models": done}])})


@pytest.fixture()
def extensions():
    RULES.register("readout-only", ReadoutOnly)
    DATASETS.register("toy-events", DatasetInfo(
        "toy-events", "40 random event samples with a class bar", preset="nmnist",
        how_to_obtain="defined in the test", loader=toy_events, embedded=True))
    STUDIES.register("count", count_study)
    SUITES.register("toy", Suite("toy", "readout-only vs BPTT on toy events",
                                 SNNKind(locality_grid("toy", "toy-events", "toy-events",
                                                       rules=("bptt", "readout-only"),
                                                       epochs=1, n_steps=6, batch_size=20)),
                                 studies=("count",)))
    yield
    for registry, name in ((SUITES, "toy"), (STUDIES, "count"), (DATASETS, "toy-events"),
                           (RULES, "readout-only")):
        registry.unregister(name)


def test_a_rule_a_data_set_a_study_and_a_suite_defined_in_a_test(extensions, tmp_path):
    result = run_suite("toy", tmp_path / "out", SuiteOptions(progress=False))
    assert sorted({r.spec.rule for r in result.runs}) == ["bptt", "readout-only"]
    assert all(r.status == "done" for r in result.runs) and len(result.runs) == 4
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(df.dataset) == {"toy-events"} and set(df.method) == {"bptt", "readout-only"}
    assert pd.read_csv(tmp_path / "out" / "count.csv").models.tolist() == [4]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Count" in report and "4 finished model(s)." in report
    again = run_suite("toy", tmp_path / "out", SuiteOptions(progress=False))
    assert all(r.skipped for r in again.runs)
