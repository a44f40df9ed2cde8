"""The ``robust-ablation`` suite: Ding et al.'s (ICML 2024) claim is the MS-MPPD weight
rho at a fixed neuron (VGG-11, PGD-10: DLIF + AT 29.06 at rho 0 -> 37.55 at rho 1). The
``robust`` suite compares DLIF + MS-MPPD with LIF AT, which changes neuron and regulariser
at once; here each neuron is trained with and without the regulariser, under AT and under
Gaussian noise, on the same harness, attacks and report as ``robust``:

- LIF (DLIF's dynamics with a = 1): ``at`` (rho 0), ``lif-mppd-at`` (rho 1), ``lif-gauss``
  (rho 0), ``lif-mppd-gauss`` (rho 1);
- DLIF: ``dlif-at0`` (rho 0), ``dlif-at`` (rho 1), ``gauss`` (rho 0), ``dlif-gauss``
  (rho 1).

The new methods are registered here (``ablation=True``: the ``robust`` suite leaves them
out); ``at``, ``gauss``, ``dlif-gauss`` and ``dlif-at`` are ``robust``'s own runs (the
same run ids: trained once for both suites when they share a runs folder).
"""

from __future__ import annotations

from spikebench.suites.base import SUITES, Suite
from spikebench.suites.robust import METHODS, SNN_FIELDS, Method, RobustKind

METHODS.register("dlif-at0", Method(
    "DLIF SNN, one-step adversarial training (rho 0)", "dlif", "fgsm",
    fields=SNN_FIELDS + ("eps_train", "chi"),
    reference="PGD-10 29.06 (Ding, VGG-11, rho 0)", ablation=True))
METHODS.register("lif-mppd-at", Method(
    "LIF + MS-MPPD, one-step adversarial training (rho 1)", "lif", "fgsm", rho=True,
    fields=SNN_FIELDS + ("eps_train", "chi", "rho"), ablation=True))
METHODS.register("lif-gauss", Method(
    "LIF SNN, Gaussian-noise training (rho 0)", "lif", "gaussian",
    fields=SNN_FIELDS + ("sigma", "chi"), ablation=True))
METHODS.register("lif-mppd-gauss", Method(
    "LIF + MS-MPPD, Gaussian noise (rho 1)", "lif", "gaussian", rho=True,
    fields=SNN_FIELDS + ("sigma", "chi", "rho"), ablation=True))

ABLATION = ("at", "lif-mppd-at", "lif-gauss", "lif-mppd-gauss", "dlif-at0", "dlif-at",
            "gauss", "dlif-gauss")

SUITES.register("robust-ablation", Suite(
    "robust-ablation",
    "Ding et al.'s MS-MPPD ablation: rho 0 vs 1 at a fixed neuron (LIF and DLIF), under "
    "one-step adversarial training and under Gaussian noise (8 conv SNNs), attacked by the "
    "robust suite's ensemble; the same data, nets and --paper settings as robust.",
    RobustKind(methods=ABLATION), studies=("transfer",)))
