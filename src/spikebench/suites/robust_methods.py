"""The ``robust`` suite's methods (``METHODS``): each defence is a ``Method`` line, the
training it names (neuron, perturbation, regulariser) and the spec fields it reads (its
run id hashes those). A user's own defence is one more ``METHODS.register`` call
(docs/extending/suites.md); the ``robust`` suite runs it after ``METHOD_ORDER``.
"""

from __future__ import annotations

from dataclasses import dataclass

from spikebench.registry import Registry


@dataclass(frozen=True)
class Method:
    description: str
    neuron: str  # "lif", "dlif", "conversion" (an ANN first) or a registered neuron
    objective: str  # "mix" perturbation: none | fgsm | gaussian (SNN methods)
    rho: bool = False  # MS-MPPD
    fields: tuple[str, ...] = ()  # the spec fields its training reads (in the run id)
    reference: str = "–"  # the papers' figures (CIFAR-10, VGG-11 unless said)
    ablation: bool = False  # only in robust-ablation's set (suites.robust_ablation)


SNN_FIELDS = ("epochs", "lr", "leak")
METHODS: Registry[Method] = Registry("robust method")
METHODS.register("vanilla", Method(
    "LIF SNN, cross-entropy", "lif", "none", fields=SNN_FIELDS,
    reference="natural LIF PGD-7: 0.03 (Ding)"))
METHODS.register("at", Method(
    "LIF SNN, one-step adversarial training (rho 0)", "lif", "fgsm",
    fields=SNN_FIELDS + ("eps_train", "chi"),
    reference="VGG5 LIF AT clean / PGD-7: 85.61 / 27.54 (Ding)"))
METHODS.register("gauss", Method(
    "DLIF SNN, Gaussian-noise training (rho 0)", "dlif", "gaussian",
    fields=SNN_FIELDS + ("sigma", "chi")))
METHODS.register("dlif-gauss", Method(
    "DLIF + MS-MPPD, Gaussian noise (rho 1)", "dlif", "gaussian", rho=True,
    fields=SNN_FIELDS + ("sigma", "chi", "rho"),
    reference="rho 1 beats rho 0 by 3.94 points (metric unnamed; Ding)"))
METHODS.register("dlif-at", Method(
    "DLIF + MS-MPPD, one-step adversarial training (rho 1)", "dlif", "fgsm", rho=True,
    fields=SNN_FIELDS + ("eps_train", "chi", "rho"),
    reference="PGD-10 37.55 (rho 0: 29.06); rerun: clean 85.17, FGSM 46.51, PGD-20 32.26"))
METHODS.register("conversion", Method(
    "adversarially trained ANN -> IF SNN (threshold balancing) -> robust fine-tuning",
    "conversion", "none",
    fields=("lr", "ann_epochs", "ann_objective", "ann_steps", "trades_beta", "eps_train",
            "threshold_scale", "percentile", "n_calib", "calib_steps", "finetune_epochs",
            "finetune_lr", "finetune_beta"),
    reference="tables not recovered offline (Özdenizci & Legenstein, TMLR 2024)"))

METHOD_ORDER = ("vanilla", "at", "gauss", "dlif-gauss", "dlif-at", "conversion")
# the models a method's run yields, in the report's order
MODEL_ORDER = (*METHOD_ORDER[:-1], "ann", "converted", "conversion")
