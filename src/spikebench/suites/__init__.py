"""Suites: a named list of specs plus the studies and report they produce.

``base`` holds the suite protocol, the command line's options, the registry ``SUITES``
and the one driver ``run_suite``; each suite family has one file: ``locality`` (the
locality paper's grids and the analysis suites on them), ``hybrid`` (ResNet/ViT/LeNet
encoders with spiking heads), ``robust`` (robust-SNN defences) and ``compress``
(HIRE-SNN and attention-guided compression); ``temporal`` puts the locality grid on SHD, SSC
and DVS Gesture.
"""

# each family registers its suites when imported (the order is `spikebench list`'s)
from spikebench.suites import (  # noqa: E402, F401, I001
    compress,
    hybrid,
    locality,  # noqa: E402, F401, I001
    robust,
    robust_ablation,
    robust_baselines,
    temporal,
)
from spikebench.suites.base import SUITES, Suite, SuiteKind, SuiteOptions, SuiteRun, run_suite

__all__ = ["SUITES", "Suite", "SuiteKind", "SuiteOptions", "SuiteRun", "run_suite"]
