"""The analysis suites end to end on tiny N-MNIST-format data: tables, PNGs, report
sections, shared runs and resumable per-model results."""

import pandas as pd
import pytest

import spikebench.harness.studies.base as studies_mod
from spikebench.cli import main
from spikebench.harness import SuiteOptions, run_suite
from spikebench.harness.spec import ExperimentSpec
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
    assert set(fi[fi.arch == "ff"].kind) == {"LW"} and "RW" in set(fi[fi.arch == "rec"].kind)
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
    assert len(list((tmp_path / "shared").iterdir())) == 1
    assert (tmp_path / "out" / "fisher.csv").is_file()
    assert "report:" in capsys.readouterr().out
