"""The compress-robust suites end to end on a few real images (one T to keep it short).
Scratch (ours): every method on direct input, standard and HIRE-SNN on rate codes, the
AGC sweep, its teacher reuse, report, Pareto plot, resume. Hybrid (the papers'): the
shared BatchNorm-free ANN, AGC's compressed ANN with and without guidance, the masks kept
through conversion and sparse SNN training, the rate-coded baseline at its own T, the
findings and both Pareto plots, resume."""

import pandas as pd
import pytest
import torch

import spikebench.suites.compress as compress_mod
from spikebench.errors import ConfigError
from spikebench.suites import SUITES, SuiteOptions, run_suite
from spikebench.suites.compress import CompressSpec, compress_specs
from spikebench.suites.compress_report import pareto_figure, pareto_front


def _recomputed(*a, **k):
    raise AssertionError("recomputed")


def test_compress_suite_end_to_end_and_resumes(tmp_path, monkeypatch):
    opts = SuiteOptions(n_train=128, n_test=32, epochs=2, n_eval=8, n_steps=2, progress=False)
    result = run_suite("compress-robust-scratch", tmp_path / "out", opts,
                       runs_dir=tmp_path / "runs")
    assert all(r.status == "done" for r in result.runs) and len(result.runs) == 4 + 2 + 3
    df = pd.read_csv(tmp_path / "out" / "compress.csv")
    assert set(df.method) == {"standard", "hire", "agc", "hire+agc"}
    assert set(df.coding) == {"direct", "bernoulli"}
    agc = df[df.method.str.contains("agc")]
    assert (agc.compression > 1.5).all()  # pruned, and the zeros were kept
    sweep = df[(df.method == "agc") & (df.coding == "direct")].sort_values("density")
    assert list(sweep.compression.round(0)) == [30, 10, 5, 2] or (
        sweep.compression.diff().dropna() < 0).all()
    assert (df[~df.method.str.contains("agc")].compression < 1.01).all()
    for col in ("clean", "fgsm", "pgd", "ensemble", "gaussian", "eff_synops_ac",
                "spikes_per_image", "epoch_time_s"):
        assert df[col].notna().all(), col
    assert (df.ensemble <= df[["clean", "fgsm", "pgd", "square"]].min(axis=1) + 1e-12).all()
    # the teachers are the suite's own standard / hire runs (one folder each per setting)
    runs = {p.name for p in (tmp_path / "runs").iterdir() if p.is_dir()}
    assert len(runs) == 9
    report = (tmp_path / "out" / "report.md").read_text()
    for needle in ("## Findings", "HIRE-SNN vs standard", "rate-coded vs direct",
                   "Neurons in force (every method): lif (leak", "codings direct: standard",
                   "AGC compression sweep", "Pareto"):
        assert needle in report, needle
    assert (tmp_path / "out" / "pareto.png").stat().st_size > 0

    monkeypatch.setattr(compress_mod, "evaluate_protocol", _recomputed)
    monkeypatch.setattr(compress_mod, "Hire", _recomputed)
    again = run_suite("compress-robust-scratch", tmp_path / "out", opts,
                      runs_dir=tmp_path / "runs")
    assert all(r.skipped for r in again.runs)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "compress.csv"), df)


def test_hybrid_suite_end_to_end_and_resumes(tmp_path, monkeypatch):
    opts = SuiteOptions(n_train=64, n_test=16, epochs=1, n_eval=4, n_steps=2, rate_steps=4,
                        progress=False)
    result = run_suite("compress-robust", tmp_path / "out", opts, runs_dir=tmp_path / "runs")
    assert all(r.status == "done" for r in result.runs) and len(result.runs) == 4 + 1 + 3 + 1
    df = pd.read_csv(tmp_path / "out" / "compress.csv")
    assert set(df.method) == {"standard", "hire", "agc", "hire+agc", "agc-unguided"}
    assert set(zip(df.coding, df.steps, strict=True)) == {("direct", 2), ("bernoulli", 4)}
    agc = df[df.method.str.contains("agc")]
    assert (agc.compression > 1.5).all() and agc.ann_acc.notna().all()
    assert (df[~df.method.str.contains("agc")].compression < 1.01).all()
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir() if p.is_dir())
    assert sum("-ann-" in r for r in runs) == 1  # one ANN for every T, coding and method
    for r in result.runs:  # AGC: its compressed ANN in its own folder, masks kept
        compressed = r.run_dir / "ann" / "checkpoint.pt"
        assert compressed.is_file() == ("agc" in r.spec.method)
    model = compress_mod.CompressKind.trained(result.runs[2].spec, result.runs[2].run_dir, 4)
    snn = model[0].model
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in snn.modules())
    assert all(n.leak is not None and n.params.reset == "subtract" for n in snn.neurons())
    report = (tmp_path / "out" / "report.md").read_text()
    for needle in ("hybrid training (DIET-SNN)", "rate-coded SNN at T=4",
                   "with vs without attention guidance", "Neurons in force (every method): "
                   "diet-if", "HIRE-SNN vs standard"):
        assert needle in report, needle
    for png in ("pareto.png", "pareto_latency.png"):
        assert (tmp_path / "out" / png).stat().st_size > 0

    monkeypatch.setattr(compress_mod, "evaluate_protocol", _recomputed)
    again = run_suite("compress-robust", tmp_path / "out", opts, runs_dir=tmp_path / "runs")
    assert all(r.skipped for r in again.runs)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "compress.csv"), df)


def test_hybrid_specs_default_and_paper():
    specs, _ = SUITES.get("compress-robust").specs(SuiteOptions(progress=False))
    assert all(s.regime == "hybrid" for s in specs)
    assert len(specs) == 4 * 3 + 1 + 3 + 1 and len({s.run_id for s in specs}) == len(specs)
    rate = [s for s in specs if s.coding == "bernoulli"]
    assert [(s.method, s.steps) for s in rate] == [("standard", 100)]
    assert rate[0].n_attack == 50 and rate[0].epochs == 1
    assert {s.hire_craft for s in specs} == {"free"}  # ours at the CPU default, named so
    paper, _ = SUITES.get("compress-robust").specs(SuiteOptions(paper=True, progress=False))
    assert {s.arch for s in paper} == {"vgg11-ref"} and {s.hire_craft for s in paper} == {
        "updated"}
    assert sorted({s.steps for s in paper if s.coding == "direct"}) == [6, 8, 10]
    assert [s.steps for s in paper if s.coding == "bernoulli"] == [100]
    for arch in ("vgg5-ref", "vgg11-ref"):  # the papers' CIFAR nets in DIET-SNN's layout
        spec = SUITES.get("compress-robust").specs(SuiteOptions(
            paper=True, archs=[arch], progress=False))[0][0]
        ann = compress_mod.build(spec, (3, 32), 10, ann=True)
        snn = compress_mod.build(spec, (3, 32), 10)
        assert not ann.batchnorm and snn.steps == 6
        assert snn(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="residual"):
        SUITES.get("compress-robust").specs(SuiteOptions(archs=["resnet12"], progress=False))
    base = CompressSpec(regime="hybrid")
    assert base.run_id != CompressSpec().run_id  # the regime is in the id
    assert CompressSpec(regime="hybrid", threshold_scale=0.3).run_id != base.run_id
    assert CompressSpec(regime="hybrid", agc_beta=3.0).run_id == base.run_id
    with pytest.raises(ConfigError, match="regime"):
        CompressSpec(regime="diet")


def test_specs_and_identities():
    specs, _ = compress_specs("compress-robust-scratch", SuiteOptions(progress=False))
    assert len(specs) == 4 * 3 + 2 * 3 + 3  # rate codes: standard and HIRE-SNN only
    assert {s.method for s in specs if s.coding == "bernoulli"} == {"standard", "hire"}
    assert len({s.run_id for s in specs}) == len(specs)
    paper, _ = compress_specs("compress-robust-scratch", SuiteOptions(paper=True,
                                                                      progress=False))
    assert len(paper) == 4 * 3 * 2 + 3  # every method on both codings
    std = CompressSpec()
    assert CompressSpec(density=0.5).run_id == std.run_id  # standard does not prune
    assert CompressSpec(method="agc", density=0.5).run_id != CompressSpec(method="agc").run_id
    assert CompressSpec(method="agc").teacher().run_id == std.run_id
    assert CompressSpec(eps=0.3, n_attack=5).run_id == std.run_id  # evaluation: cached apart
    with pytest.raises(ConfigError, match="multiple"):
        CompressSpec(method="hire", steps=3, hire_periods=2)
    with pytest.raises(ConfigError, match="density"):
        CompressSpec(density=0.0)


def test_pareto_front_keeps_the_undominated_points():
    pts = [(1.0, 50.0), (2.0, 60.0), (3.0, 55.0), (0.5, 40.0), (2.0, 58.0), (4.0, 70.0)]
    assert pareto_front(pts) == [(0.5, 40.0), (1.0, 50.0), (2.0, 60.0), (4.0, 70.0)]


def test_every_pareto_marker_is_visible_in_its_own_colour():
    # open markers (rate code) once had no edge colour: drawn, but invisible
    rows = [dict(method=m, coding=c, eff_synops_ac=1e5 * (i + 1), eff_synops_mac=1e3,
                 clean=0.8, ensemble=0.3 + 0.01 * i)
            for i, (m, c) in enumerate((m, c) for m in ("standard", "hire", "agc", "hire+agc")
                                       for c in ("direct", "bernoulli"))]
    fig = pareto_figure(pd.DataFrame(rows))
    for ax in fig.axes[:2]:
        colours = {}
        for pc in ax.collections:
            face, edge = pc.get_facecolor(), pc.get_edgecolor()
            assert len(edge) and edge[0][3] > 0  # an outline, whatever the fill
            method, coding = pc.get_label().rstrip(")").split(" (")
            assert (len(face) and face[0][3] > 0) == (coding == "direct")
            colours.setdefault(method, set()).add(tuple(edge[0]))
        assert len(colours) == 4 and all(len(c) == 1 for c in colours.values())
        assert len({next(iter(c)) for c in colours.values()}) == 4
