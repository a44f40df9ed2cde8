"""Experiment specs, the training/evaluation loop, checkpoints, results, suites, reports."""

from spikebench.harness.spec import ExperimentSpec
from spikebench.harness.suites import SUITES, SuiteOptions, run_suite
from spikebench.harness.train import build_model, load_trained, train_run

__all__ = [
    "SUITES",
    "ExperimentSpec",
    "SuiteOptions",
    "build_model",
    "load_trained",
    "run_suite",
    "train_run",
]
