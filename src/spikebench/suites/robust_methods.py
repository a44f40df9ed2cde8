"""The ``robust`` suite's methods (``METHODS``): each defence is a ``Method`` line, the
training it names (neuron, perturbation, regulariser) and the spec fields it reads (its
run id hashes those). A user's own defence is one more ``METHODS.register`` call
(docs/extending/suites.md); the ``robust`` suite runs it after ``METHOD_ORDER``.
``neuron_params`` builds the neuron a method names, ``ortho_beta`` AT+Reg's step.
"""

from __future__ import annotations

from dataclasses import dataclass

from spikebench.neurons import NEURONS, DLIFParams
from spikebench.registry import Registry


@dataclass(frozen=True)
class Method:
    description: str
    neuron: str  # "lif", "dlif", "conversion" (an ANN first) or a registered neuron
    objective: str  # "mix" perturbation: none | fgsm | gaussian (SNN methods)
    rho: bool = False  # MS-MPPD
    fields: tuple[str, ...] = ()  # the spec fields its training reads (in the run id)
    reference: str = "–"  # the papers' figures (CIFAR-10, VGG-11 unless said)
    ablation: bool = False  # not in robust's own set: only suites that name it run it
    ortho: bool = False  # SNN-RAT's orthogonality update after each step (AT+Reg)
    fixed: tuple[tuple[str, object], ...] = ()  # spec fields the method sets
    paper: tuple[tuple[str, object], ...] = ()  # and with --paper (its paper's own values)


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
# --paper: the robust-conversion reference's training eps (2/255), fine-tuning weight
# decay (1e-3) and cutout (16 px, on the ANN's and the fine-tuning's batches); Ding et
# al.'s methods take the suite's PAPER values (4/255, 5e-4, no cutout)
CONVERSION_PAPER = (("eps_train", 2 / 255), ("finetune_weight_decay", 1e-3), ("cutout", 16))
CONVERSION_FIELDS = ("lr", "ann_epochs", "ann_objective", "ann_steps", "trades_beta",
                     "eps_train", "threshold_scale", "percentile", "n_calib", "calib_steps",
                     "finetune_epochs", "finetune_lr", "finetune_beta", "finetune_weight_decay")
METHODS.register("conversion", Method(
    "adversarially trained ANN -> IF SNN (threshold balancing) -> robust fine-tuning",
    "conversion", "none",
    fields=CONVERSION_FIELDS, paper=CONVERSION_PAPER,
    reference="tables not recovered offline (Özdenizci & Legenstein, TMLR 2024)"))


METHOD_ORDER = ("vanilla", "at", "gauss", "dlif-gauss", "dlif-at", "conversion")
# the models a method's run yields, in the report's order
MODEL_ORDER = (*METHOD_ORDER[:-1], "ann", "converted", "conversion")

ROLES = ("ann", "converted", "conversion")  # the three models of a conversion method


def model_names(method: str) -> dict[str, str]:
    """A conversion method's models by role: ``conversion``'s are named by their roles,
    another's (``conversion-mart``) by the method (``conversion-mart-ann``, ...)."""
    if method == "conversion":
        return {r: r for r in ROLES}
    return {"ann": f"{method}-ann", "converted": f"{method}-converted", "conversion": method}


def model_role(method: str, model: str) -> str | None:
    """The role of a conversion method's model (None: a one-model method's)."""
    if METHODS.get(method).neuron != "conversion":
        return None
    return {v: k for k, v in model_names(method).items()}[model]


def neuron_params(spec, kind: str):
    """``lif``/``dlif``: Ding et al.'s (a[t] off/on, hard reset, ``spec.leak``);
    ``conversion``: the converted IF SNN's; another registered neuron: its defaults."""
    if kind == "conversion":  # IF, hard reset, learnable per-layer thresholds
        return DLIFParams(leak=1.0, reset="zero", dynamic=False, learn_threshold=True,
                          steps=spec.steps)
    if kind in ("lif", "dlif"):
        return DLIFParams(leak=spec.leak, reset="zero", dynamic=kind == "dlif",
                          steps=spec.steps)
    return NEURONS.get(kind).make_params()


def ortho_beta(spec) -> float:
    """AT+Reg's orthogonality step: ``spec.ortho_beta``, else Ding et al.'s per net."""
    if spec.ortho_beta is not None:
        return spec.ortho_beta
    return 0.004 if spec.arch.startswith("wrn") else 0.001
