"""A suite's grid as pytest-benchmark cases (the spikebench pytest plugin):

    pytest benchmarks/suites --benchmark-json=run1.json
    pytest benchmarks/suites --spikebench-rule mypkg.rules:MyRule --benchmark-json=run2.json
    pytest-benchmark compare run1.json run2.json

Each case trains one spec of the suite for an epoch and evaluates it; accuracy, peak
memory, SynOps and activation sparsity land in the case's extra_info."""


def test_grid_case(spikebench_case):
    assert 0.0 <= spikebench_case["test_acc"] <= 1.0
