"""Training procedures of image classifiers, the conv and hybrid suites' learning rules
(``Procedure``, ``procedure``; each a ``learning_rules.Learner`` that the one ``fit`` loop
calls): adversarial and noise training, robust fine-tuning and the MS-MPPD regulariser
(``robust.Objective``; plain cross-entropy is its ``Objective()``), HIRE-SNN's crafted
noise (``hire.Hire``), attention-guided fine-tuning of a pruned network (``prune.Guided``),
and ANN-to-SNN conversion (``conversion``). The perturbations they craft come from
``spikebench.attacks.perturb``. A new procedure is one file with a ``Procedure`` subclass
and a line in ``PROCEDURES``; tests/training/test_procedures.py runs every entry."""

from spikebench.registry import Registry
from spikebench.training.hire import Hire
from spikebench.training.procedure import Procedure
from spikebench.training.prune import Guided
from spikebench.training.robust import Objective

PROCEDURES: Registry[type[Procedure]] = Registry("training procedure")
PROCEDURES.register("objective", Objective)
PROCEDURES.register("hire", Hire)
PROCEDURES.register("agc", Guided)

__all__ = ["PROCEDURES", "Guided", "Hire", "Objective", "Procedure"]
