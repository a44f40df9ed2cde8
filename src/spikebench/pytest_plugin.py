"""A pytest plugin: a suite's grid (rule x arch x data set x seed) as pytest-benchmark cases.

Installed with spikebench (entry point ``pytest11``), so that any test file can use it:

    pytest benchmarks/suites --benchmark-json=run1.json     # our grid, small sizes
    pytest benchmarks/suites --spikebench-rule mypkg.rules:MyRule   # + a rule of yours
    pytest-benchmark compare run1.json run2.json            # two runs side by side

Options: ``--spikebench-suite NAME`` (default ``default``), ``--spikebench-rule
MODULE:CLASS`` (a ``LearningRule`` subclass, registered under its ``name`` and added to the
grid; repeatable), ``--spikebench-paper`` (the suite's paper settings: full data, its
epochs), ``--spikebench-n-train`` / ``--spikebench-n-test`` / ``--spikebench-steps`` /
``--spikebench-data-dir``.
Defaults are small (500 training and 200 test samples): minutes on 2 cores.

A test that takes the ``spikebench_spec`` argument is parametrised over the grid (ids like
``bptt-ff-nmnist-sim-s0``); the ``spikebench_case`` fixture trains that spec with the
harness's own loop for one epoch (timed by ``benchmark``: the epoch and the test-set
evaluation) and puts into ``benchmark.extra_info``: ``test_acc``, ``epoch_s`` (the epoch
alone), ``peak_rss_mb`` (peak resident memory above the start), the cost of one training
step of the trained network as the locality frontier measures it (``step_ms``,
``step_peak_mb``; ``spikebench.studies.frontier``) with the rule's locality class
(``credit_space``, ``credit_time``), and the efficiency metrics
(``synops_ac``, ``synops_mac``, ``synops_dense``, ``activation_sparsity``, ...;
spikebench.metrics.efficiency).
"""

from __future__ import annotations

import importlib
from dataclasses import replace

import pytest

SMALL = {"n_train": 500, "n_test": 200}


def pytest_addoption(parser) -> None:
    group = parser.getgroup("spikebench", "spikebench suites as benchmark cases")
    group.addoption("--spikebench-suite", default="default",
                    help="the suite whose grid the spikebench_spec cases run (default: default)")
    group.addoption("--spikebench-rule", action="append", default=[], metavar="MODULE:CLASS",
                    help="a LearningRule subclass of yours, added to the grid (repeatable)")
    group.addoption("--spikebench-paper", action="store_true",
                    help="the suite's paper settings (all samples, its epochs and seeds)")
    group.addoption("--spikebench-n-train", type=int, default=None,
                    help=f"training samples (default {SMALL['n_train']}; all with "
                    "--spikebench-paper)")
    group.addoption("--spikebench-n-test", type=int, default=None,
                    help=f"test samples (default {SMALL['n_test']})")
    group.addoption("--spikebench-steps", type=int, default=None, help="time steps T")
    group.addoption("--spikebench-data-dir", default=None,
                    help="the suite's data folder (as spikebench run --data-dir)")


def load_rule(path: str):
    """``MODULE:CLASS`` -> the class, registered in RULES under its ``name``."""
    from spikebench.errors import ConfigError
    from spikebench.learning_rules import RULES, LearningRule

    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        raise ConfigError(f"--spikebench-rule {path!r}: expected MODULE:CLASS")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"--spikebench-rule {path!r}: {err}") from None
    if not (isinstance(cls, type) and issubclass(cls, LearningRule)) or not cls.name:
        raise ConfigError(f"--spikebench-rule {path!r} is not a LearningRule subclass with a "
                          "name")
    if cls.name not in RULES:
        RULES.register(cls.name, cls)
    elif RULES.get(cls.name) is not cls:
        raise ConfigError(f"--spikebench-rule {path!r}: the name {cls.name!r} is taken")
    return cls


def grid(config) -> list:
    """The specs of the chosen suite, with the options applied."""
    from spikebench.suites.base import SUITES, SuiteOptions

    suite = SUITES.get(config.getoption("--spikebench-suite"))
    extra = [load_rule(p).name for p in config.getoption("--spikebench-rule")]
    paper = config.getoption("--spikebench-paper")
    sizes = {} if paper else dict(SMALL)
    for key in ("n_train", "n_test"):
        value = config.getoption(f"--spikebench-{key.replace('_', '-')}")
        if value is not None:
            sizes[key] = value
    opts = SuiteOptions(paper=paper, n_steps=config.getoption("--spikebench-steps"),
                        data_dir=config.getoption("--spikebench-data-dir"), progress=False,
                        **sizes)
    suite.check_options(opts)
    specs, _ = suite.specs(opts)
    if extra:  # the user's rules on the same grid as ours
        base = [s for s in specs if s.rule == specs[0].rule]
        specs += [replace(s, rule=r, rule_options={}) for r in extra for s in base]
    return specs


def case_id(spec) -> str:
    return f"{spec.rule}-{spec.arch}-{spec.dataset}-s{spec.seed}"


def pytest_generate_tests(metafunc) -> None:
    if "spikebench_spec" in metafunc.fixturenames:
        specs = grid(metafunc.config)
        metafunc.parametrize("spikebench_spec", specs, ids=[case_id(s) for s in specs])


def _rss_kb(key: str) -> int:
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(key))
    except (OSError, StopIteration):
        return 0


def _release_freed_memory() -> None:
    """Give memory that Python and malloc hold but no longer use back to the system, so
    that the resident size before a case is what is really in use (without this, a case
    reuses the pages an earlier case freed, and its peak reads about 0)."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the measure is an upper bound of less
        pass


def peak_rss_mb(fn):
    """(``fn()``, the peak resident memory in MB above the resident size at the start)
    on Linux (``VmHWM``, restarted with ``clear_refs``); the peak is 0 where ``/proc`` is
    not at hand."""
    _release_freed_memory()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # the peak resident size restarts from here (Linux)
    except OSError:
        pass
    before = _rss_kb("VmRSS")
    out = fn()
    return out, max(_rss_kb("VmHWM") - before, 0) / 1024


@pytest.fixture
def spikebench_case(benchmark, spikebench_spec, tmp_path, request):
    """Train ``spikebench_spec`` with the harness's own loop (``train_run``, a fresh run
    folder) for one epoch (the suite's epochs with --spikebench-paper), timed by
    ``benchmark``, and evaluate it on the test set; returns the final test metrics (also
    in ``benchmark.extra_info``, with the epoch's own time ``epoch_s``)."""
    from spikebench.engine.data import spec_data
    from spikebench.engine.train import train_run

    paper = request.config.getoption("--spikebench-paper")
    spec = spikebench_spec if paper else replace(spikebench_spec, epochs=1)
    train, test = spec_data(spec, progress=False)
    result = {}

    def run() -> None:
        result["run"] = train_run(spec, tmp_path / "run", train, test, progress=False)

    _, peak_mb = peak_rss_mb(lambda: benchmark.pedantic(run, rounds=1, iterations=1))
    res = result["run"]
    if res.status != "done":
        pytest.fail(f"{case_id(spec)}: {res.status}: {res.message}")
    from spikebench.learning_rules import RULES
    from spikebench.metrics.stepcost import step_costs
    from spikebench.studies.frontier import step_job

    (cost,) = step_costs([step_job(tmp_path / "run", test)[1]])  # the locality frontier's
    rule_cls = RULES.get(spec.rule)
    last = max(m["epoch"] for m in res.metrics)
    final = {m["metric"]: m["value"] for m in res.metrics if m["epoch"] == last}
    benchmark.extra_info.update({
        "suite": spec.suite, "rule": spec.rule, "arch": spec.arch, "dataset": spec.dataset,
        "seed": spec.seed, "n_train": len(train), "n_test": len(test), "steps": spec.n_steps,
        "epochs": spec.epochs, "epoch_s": final.pop("epoch_time_s"),
        "peak_rss_mb": peak_mb, "step_ms": cost["step_ms"], "step_peak_mb": cost["peak_mb"],
        "credit_space": rule_cls.credit_space, "credit_time": rule_cls.credit_time,
        **{k.removeprefix("test_") if k != "test_acc" else k: v for k, v in final.items()}})
    return final

