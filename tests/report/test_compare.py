"""One results schema: every suite kind's results.csv starts with the same columns, any two
concatenate into one tidy table, and one helper (and `spikebench compare`) compares them.

The tables are built by each kind's own table function from run results made here (no
training): what is tested is the schema, not what training gives."""

import pandas as pd
import pytest

from spikebench.cli import main
from spikebench.engine.executor import RunResult
from spikebench.engine.results import COLUMNS, tidy_rows, to_frame
from spikebench.engine.spec import ExperimentSpec
from spikebench.errors import ConfigError
from spikebench.report.compare import compare_figure, compare_table, read_results
from spikebench.suites import (
    compress,
    compress_report,
    hybrid,
    hybrid_report,
    robust,
    robust_report,
)


def _metrics(acc: float, epochs: int = 2) -> list[dict]:
    return [m for e in range(1, epochs + 1)
            for m in ({"epoch": e, "metric": "test_acc", "value": acc * e / epochs},
                      {"epoch": e, "metric": "train_loss", "value": 1.0 / e})]


def _tables() -> dict[str, pd.DataFrame]:
    sizes = {"n_train": 10, "n_test": 5}
    mlp = [tidy_rows(ExperimentSpec(rule=rule, arch="ff", seed=seed), _metrics(acc), "done",
                     sizes)[0]
           for rule, acc in (("bptt", 0.9), ("eprop", 0.8)) for seed, acc in ((0, acc),
                                                                              (1, acc - 0.1))]
    spec = hybrid.HybridSpec(dataset="fashion-mnist", encoder="lenet5", suite="hybrid-lenet")
    stages = {v: RunResult(spec, "done", _metrics(0.7)) for v in ("default", "lif", "paralif")}
    hyb = hybrid_report._tables("hybrid-lenet", [RunResult(spec, "done", [], sizes=sizes,
                                                    details={"stages": stages})])
    rspec = robust.RobustSpec(method="conversion", suite="robust")
    rstages = {"ann": RunResult(rspec, "done", _metrics(0.6)),
               "conversion": RunResult(rspec, "done", _metrics(0.5))}
    rob = robust_report._tables("robust", [RunResult(rspec, "done", [], sizes=sizes, details={
        "stages": rstages, "evaluation": {"converted": {"clean": 0.4, "ensemble": 0.1}}})])
    cspec = compress.CompressSpec(method="agc", suite="compress-robust")
    comp = compress_report._tables("compress-robust", [RunResult(cspec, "done", _metrics(0.3),
                                                          sizes=sizes)])
    return {"mlp": to_frame([r for rows in mlp for r in rows]), "hybrid": hyb["tidy"],
            "robust": rob["tidy"], "compress": comp["tidy"]}


def test_every_kind_starts_with_the_common_columns_and_fills_them():
    for kind, df in _tables().items():
        assert list(df.columns[:len(COLUMNS)]) == COLUMNS, kind
        assert not df[COLUMNS].isna().any().any(), kind  # every identifying field is filled
    tables = _tables()
    assert set(tables["hybrid"].stage) == {"encoder", "head-lif", "head-paralif"}
    assert set(tables["hybrid"].neuron) == {"none", "lif", "paralif"}
    rob = tables["robust"]
    assert set(rob.stage) == {"ann", "conversion", "converted"}
    assert set(rob[rob.stage == "ann"].neuron) == {"none"}
    assert set(rob[rob.stage != "ann"].neuron) == {"if"}
    assert list(tables["compress"].columns[len(COLUMNS):]) == ["coding", "steps", "density"]


def test_any_suites_results_concatenate_and_compare(tmp_path):
    paths = []
    for kind, df in _tables().items():
        (tmp_path / kind).mkdir()
        df.to_csv(tmp_path / kind / "results.csv", index=False)
        paths.append(tmp_path / kind / "results.csv")
    df = read_results(*paths)
    assert list(df.columns[:len(COLUMNS)]) == COLUMNS
    assert set(df.suite) == {"default", "hybrid-lenet", "robust", "compress-robust"}
    assert len(df) == sum(len(t) for t in _tables().values())
    table = compare_table(df).set_index(["suite", "method", "stage"])
    # the last epoch's value; mean and sample std over the two MLP seeds (0.9, 0.8 | 0.8, 0.7)
    assert table.loc[("default", "bptt", "train"), "mean"] == pytest.approx(0.85)
    assert table.loc[("default", "bptt", "train"), "std"] == pytest.approx(0.0707107, rel=1e-5)
    assert table.loc[("default", "eprop", "train"), "n"] == 2
    assert table.loc[("hybrid-lenet", "bptt", "head-lif"), "mean"] == pytest.approx(0.7)
    assert table.loc[("robust", "conversion", "conversion"), "mean"] == pytest.approx(0.5)
    assert pd.isna(table.loc[("compress-robust", "agc", "train"), "std"])  # one seed
    fig = compare_figure(df)
    assert len(fig.axes[0].patches) == len(table)

    out = tmp_path / "cmp"
    assert main(["compare", *map(str, paths), "--out", str(out)]) == 0
    text = (out / "compare.md").read_text()
    assert "| default | nmnist-sim | ff | lif | bptt | train | 0.85 |" in text
    assert (out / "compare.png").stat().st_size > 0


def test_compare_names_the_bad_file_or_metric(tmp_path, capsys):
    bad = tmp_path / "old.csv"
    pd.DataFrame({"suite": ["x"], "run_id": ["a"], "rule": ["bptt"]}).to_csv(bad, index=False)
    with pytest.raises(ConfigError, match="old.csv: its columns do not start with"):
        read_results(bad)
    assert main(["compare", str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.csv: no such results file" in err
    good = tmp_path / "results.csv"
    _tables()["mlp"].to_csv(good, index=False)
    assert main(["compare", str(good), "--metric", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "'nope': no such metric" in capsys.readouterr().err


def test_ordered_lists_each_value_once_in_the_given_order_then_sorted():
    from spikebench.report.markdown import ordered

    assert ordered(["x", "eprop", "bptt", "a", "bptt"], ("bptt", "eprop", "bptt", "x")) == [
        "bptt", "eprop", "x", "a"]
    assert ordered(["c", "b"], ()) == ["b", "c"]
