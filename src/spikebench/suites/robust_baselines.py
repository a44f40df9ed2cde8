"""The ``robust-baselines`` suite: the references' other training regimes beside the
``robust`` suite's, on its harness, attacks and report:

- ``dlif-at-reg``: Ding et al.'s best numbers, AT+Reg: DLIF + MS-MPPD with one-step AT
  and SNN-RAT's orthogonality update after every step (``training.robust.
  orthogonal_retraction``, beta 0.001 on VGG, 0.004 on WRN-16-4; weight decay 0 as in
  their code). The residual-mixing weights their code also projects onto the simplex
  do not exist in our nets;
- ``conversion-trades`` and ``conversion-mart``: the robust conversion from a TRADES
  (beta 6) or MART (beta 4) base ANN, where ``conversion`` starts from PGD-AT.

``dlif-at`` and ``conversion`` are ``robust``'s own runs (the same run ids: trained once
for both suites when they share a runs folder).
"""

from __future__ import annotations

from spikebench.suites.base import SUITES, Suite
from spikebench.suites.robust import METHODS, SNN_FIELDS, Method, RobustKind
from spikebench.suites.robust_methods import CONVERSION_FIELDS, CONVERSION_PAPER

METHODS.register("dlif-at-reg", Method(
    "DLIF + MS-MPPD, one-step AT, orthogonality regulariser (AT+Reg)", "dlif", "fgsm",
    rho=True, ortho=True, fixed=(("weight_decay", 0.0),),
    fields=SNN_FIELDS + ("eps_train", "chi", "rho", "ortho_beta"),
    reference="AT+Reg rho 1 PGD-7: 49.02 (VGG-11), 56.71 (WRN-16-4); SNN-RAT 45.23 (Ding)",
    ablation=True))
METHODS.register("conversion-trades", Method(
    "TRADES ANN (beta 6) -> IF SNN (threshold balancing) -> robust fine-tuning",
    "conversion", "none", fields=CONVERSION_FIELDS, paper=CONVERSION_PAPER,
    fixed=(("ann_objective", "trades"),), ablation=True,
    reference="tables not recovered offline (Özdenizci & Legenstein, TMLR 2024)"))
METHODS.register("conversion-mart", Method(
    "MART ANN (beta 4) -> IF SNN (threshold balancing) -> robust fine-tuning",
    "conversion", "none", paper=CONVERSION_PAPER, fixed=(("ann_objective", "mart"),),
    fields=tuple(f for f in CONVERSION_FIELDS if f != "trades_beta") + ("mart_beta",),
    reference="tables not recovered offline (Özdenizci & Legenstein, TMLR 2024)",
    ablation=True))

BASELINES = ("dlif-at", "dlif-at-reg", "conversion", "conversion-trades", "conversion-mart")

SUITES.register("robust-baselines", Suite(
    "robust-baselines",
    "The robust-SNN references' other regimes: Ding et al.'s AT+Reg (DLIF + MS-MPPD, "
    "one-step AT, SNN-RAT's orthogonality update) beside DLIF + MS-MPPD AT, and the robust "
    "conversion from PGD-AT, TRADES and MART base ANNs; attacked by the robust suite's "
    "ensemble, with the same data, nets and --paper settings.",
    RobustKind(methods=BASELINES), studies=("transfer",)))
