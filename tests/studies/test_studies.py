"""The analysis suites end to end on tiny N-MNIST-format data: tables, PNGs, report
sections, shared runs and resumable per-model results."""

import pandas as pd
import pytest

import spikebench.studies.base as studies_mod
from spikebench.cli import main
from spikebench.engine.spec import ExperimentSpec
from spikebench.suites import SuiteOptions, run_suite
from tests.datasets.test_events import make_full_layout


@pytest.fixture(scope="module")
def nmnist_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("nmnist")
    make_full_layout(root, per_class=3)
    return root


def opts(nmnist_dir, **kw):
    base = dict(data_dir=str(nmnist_dir), epochs=1, n_steps=5, batch_size=16,
                rules=["bptt", "decolle"], progress=False)
    return SuiteOptions(**{**base, **kw})


def test_fgsm_and_fisher_share_runs_and_resume_from_cached_results(tmp_path, nmnist_dir,
                                                                   monkeypatch):
    runs = tmp_path / "runs"
    first = run_suite("fgsm", tmp_path / "fgsm", opts(nmnist_dir), runs_dir=runs)
    df = pd.read_csv(tmp_path / "fgsm" / "fgsm.csv")
    assert set(df.rule) == {"bptt", "decolle"} and set(df.arch) == {"ff", "rec"}
    fg = df[df.attack == "fgsm"]
    assert set(fg.variant) == {"ann", "snn"}
    assert sorted(set(fg.eps)) == [0.0, 0.001, 0.005, 0.01, 0.02, 0.05]
    assert set(df.attack) == {"fgsm", "pgd", "square"}
    clean = fg[fg.eps == 0]
    assert (clean.acc == clean.clean_acc).all()
    report = (tmp_path / "fgsm" / "report.md").read_text()
    assert "## FGSM (Table III)" in report and "97.12 / 97.12" not in report
    assert "83.82" in report  # the paper's figure beside ours
    assert (tmp_path / "fgsm" / "fgsm.png").stat().st_size > 0

    # the fisher suite trains nothing: same specs, same runs folder
    second = run_suite("fisher", tmp_path / "fisher", opts(nmnist_dir), runs_dir=runs)
    assert all(r.skipped for r in second.runs) and not any(r.skipped for r in first.runs)
    fi = pd.read_csv(tmp_path / "fisher" / "fisher.csv")
    for _, g in fi.groupby("run_id"):
        assert g.share.sum() == pytest.approx(1.0)
    assert set(fi[fi.model == "ff"].kind) == {"LW"} and "RW" in set(fi[fi.model == "rec"].kind)
    assert set(fi.method) == {"bptt", "decolle"} and set(fi.suite) == {"fisher"}
    assert (tmp_path / "fisher" / "fisher.png").stat().st_size > 0
    assert (tmp_path / "fisher" / "fisher_time.png").stat().st_size > 0

    # a rerun reads the per-model results back: no model is loaded again
    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(studies_mod, "load_trained", boom)
    run_suite("fgsm", tmp_path / "fgsm", opts(nmnist_dir), runs_dir=runs)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "fgsm" / "fgsm.csv"), df)


def test_cka_suite_compares_rules_seeds_and_conversion(tmp_path, nmnist_dir):
    run_suite("cka", tmp_path / "cka", opts(nmnist_dir, archs=["ff"]))
    df = pd.read_csv(tmp_path / "cka" / "cka.csv")
    assert set(df.seed_a) == {0, 1}  # two seeds by default
    assert not df.duplicated(["model", "a", "b", "seed_a", "seed_b", "layer_a", "layer_b"]).any()
    assert set(df.suite) == {"cka"} and set(df.model) == {"ff"}
    pairs = set(zip(df.a, df.b, strict=True))
    assert {("bptt", "decolle"), ("bptt", "conversion"), ("bptt", "bptt")} <= pairs
    same = df[(df.a == "bptt") & (df.b == "bptt")]
    assert set(zip(same.seed_a, same.seed_b, strict=True)) == {(0, 1)}  # two inits
    assert df.cka.notna().any() and df.cka.dropna().between(-1.0 - 1e-9, 1.0 + 1e-9).all()
    adv = pd.read_csv(tmp_path / "cka" / "cka_adversarial.csv")
    assert set(adv.layer) == {"h1", "h2", "out"} and 0.0 not in set(adv.eps)
    report = (tmp_path / "cka" / "report.md").read_text()
    assert "## CKA between learning rules (Figure 2)" in report and "conversion" in report
    if df.cka.isna().any():  # a silent layer on this tiny data: said, not hidden
        assert "CKA is undefined" in report
    assert (tmp_path / "cka" / "cka.png").stat().st_size > 0


def test_backdoor_suite_poisons_training_only(tmp_path, nmnist_dir):
    run_suite("backdoor", tmp_path / "bd", opts(nmnist_dir, rules=["bptt"], archs=["ff"],
                                                n_train=None))
    df = pd.read_csv(tmp_path / "bd" / "backdoor.csv")
    assert sorted(df.rate) == [0.1, 0.3, 0.5, 0.7, 0.9]
    assert df.asr.between(0, 1).all() and (df.n_triggered == 3).all()
    report = (tmp_path / "bd" / "report.md").read_text()
    assert "## Backdoor (Table IV)" in report and "(96.23 / 4.80)" in report
    assert "## Test accuracy" not in report  # poisoned runs are not Table II


def test_backdoor_spec_fields_are_checked_and_clean_ids_are_unchanged():
    assert ExperimentSpec().run_id == ExperimentSpec(backdoor={}).run_id
    poisoned = ExperimentSpec(backdoor={"source": 1, "target": 2, "rate": 0.5})
    assert poisoned.run_id != ExperimentSpec().run_id
    with pytest.raises(ValueError, match="differ"):
        ExperimentSpec(backdoor={"source": 1, "target": 1, "rate": 0.5})
    with pytest.raises(ValueError, match="bad backdoor"):
        ExperimentSpec(backdoor={"source": 1, "target": 2, "colour": 3})


def test_cli_runs_a_study_with_a_shared_runs_folder(tmp_path, nmnist_dir, capsys):
    args = ["run", "fisher", "--data-dir", str(nmnist_dir), "--epochs", "1", "--steps", "4",
            "--rules", "bptt", "--archs", "ff", "--no-progress", "--n-eval", "10",
            "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "shared")]
    assert main(args) == 0
    assert len([p for p in (tmp_path / "shared").iterdir() if p.is_dir()]) == 1
    assert (tmp_path / "out" / "fisher.csv").is_file()
    assert "report:" in capsys.readouterr().out


def test_fidelity_suite_ablates_the_choices_the_paper_leaves_open(tmp_path, nmnist_dir):
    from spikebench.studies.fidelity import ATTACK_CELLS, TRAINING_CELLS, TRIGGER_CELLS

    o = SuiteOptions(data_dir=str(nmnist_dir), epochs=1, n_train=40, n_test=40, n_steps=5,
                     batch_size=16, n_eval=20, progress=False)
    result = run_suite("fidelity", tmp_path / "f", o)
    assert {r.spec.rule for r in result.runs} == {"bptt"} and not result.failed
    real = [r.spec for r in result.runs if r.spec.dataset == "nmnist"]
    assert real and all(s.data_dir == str(nmnist_dir.resolve()) for s in real)
    fg = pd.read_csv(tmp_path / "f" / "fidelity_fgsm.csv")
    assert set(fg.cell) == set(TRAINING_CELLS) and set(fg.attack_cell) == set(ATTACK_CELLS)
    assert (fg[fg.eps == 0].acc == fg[fg.eps == 0].clean_acc).all()
    # eps relative to the input scale is the absolute eps where the scale is 1
    binary = fg[fg.cell == "binary frames"].set_index(["arch", "attack_cell", "eps"]).acc
    assert (fg[fg.cell == "binary frames"].scale == 1).all()
    assert binary.xs("eps x input scale", level=1).equals(
        binary.xs("clipped, absolute eps, ReLU", level=1))
    assert (fg[fg.cell == "count frames"].scale > 1).all()
    bd = pd.read_csv(tmp_path / "f" / "fidelity_backdoor.csv")
    assert set(bd.cell) == set(TRIGGER_CELLS) and set(bd.rate) == {0.1, 0.3}
    assert bd.asr.between(0, 1).all()
    report = (tmp_path / "f" / "report.md").read_text()
    for text in ("## Fidelity audit", "### FGSM on the ANN counterpart (Table III)",
                 "### Backdoor ASR (Table IV)", "### Conclusions", "paper (BPTT)",
                 "| 16.8 |", "REC > FF", "REC < FF", "closest to the paper"):
        assert text in report, text


def test_fidelity_without_real_data_says_so(tmp_path, monkeypatch):
    from spikebench.suites.locality import fidelity_build

    monkeypatch.setenv("SPIKEBENCH_DATA", str(tmp_path / "nothing"))
    specs, notes = fidelity_build(SuiteOptions(progress=False))
    assert specs and all(s.dataset == "nmnist-sim" for s in specs)
    assert "real N-MNIST cells were not run" in notes[0] and str(tmp_path / "nothing") in notes[0]
    # 3 training cells + 9 trigger cells x 2 rates, x FF/REC
    assert len(specs) == 2 * (3 + 9 * 2)
    assert len({s.run_id for s in specs}) == len(specs)
    with pytest.raises(FileNotFoundError, match="nmnist not found at"):
        fidelity_build(SuiteOptions(data_dir=str(tmp_path / "typo"), progress=False))


def test_paper_uses_the_fidelity_audits_closest_settings_and_the_default_stays():
    from spikebench.papers.locality import PAPER_FGSM_FIELDS, PAPER_TRIGGER
    from spikebench.suites.base import SUITES

    default, _ = SUITES.get("fgsm").specs(SuiteOptions(progress=False))
    paper, _ = SUITES.get("fgsm").specs(SuiteOptions(paper=True, progress=False))
    assert {s.frames for s in default} == {"binary"}
    assert {s.frames for s in paper} == {PAPER_FGSM_FIELDS["frames"]} == {"normalised"}
    # the default suite's models are the fgsm suite's default ones (shared runs folder)
    assert {s.run_id for s in default} == {
        s.run_id for s in SUITES.get("default").specs(SuiteOptions(progress=False))[0]}
    bd_default, _ = SUITES.get("backdoor").specs(SuiteOptions(progress=False))
    bd_paper, _ = SUITES.get("backdoor").specs(SuiteOptions(paper=True, progress=False))
    assert all(set(s.backdoor) == {"source", "target", "rate"} for s in bd_default)
    assert all(s.backdoor["pixels"] == PAPER_TRIGGER["pixels"] and s.backdoor["period"] == 4
               for s in bd_paper)
