"""The compress-robust suite end to end on a few real images (one T to keep it short):
every method on direct input, standard and HIRE-SNN on rate codes, the AGC sweep, its
teacher reuse, report, Pareto plot, resume."""

import pandas as pd
import pytest

import spikebench.suites.compress as compress_mod
from spikebench.errors import ConfigError
from spikebench.suites import SuiteOptions, run_suite
from spikebench.suites.compress import CompressSpec, compress_specs
from spikebench.suites.compress_report import pareto_figure, pareto_front


def test_compress_suite_end_to_end_and_resumes(tmp_path, monkeypatch):
    opts = SuiteOptions(n_train=128, n_test=32, epochs=2, n_eval=8, n_steps=2, progress=False)
    result = run_suite("compress-robust", tmp_path / "out", opts, runs_dir=tmp_path / "runs")
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

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(compress_mod, "evaluate_protocol", boom)
    monkeypatch.setattr(compress_mod, "Hire", boom)
    again = run_suite("compress-robust", tmp_path / "out", opts, runs_dir=tmp_path / "runs")
    assert all(r.skipped for r in again.runs)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "compress.csv"), df)


def test_specs_and_identities():
    specs, _ = compress_specs("compress-robust", SuiteOptions(progress=False))
    assert len(specs) == 4 * 3 + 2 * 3 + 3  # rate codes: standard and HIRE-SNN only
    assert {s.method for s in specs if s.coding == "bernoulli"} == {"standard", "hire"}
    assert len({s.run_id for s in specs}) == len(specs)
    paper, _ = compress_specs("compress-robust", SuiteOptions(paper=True, progress=False))
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
