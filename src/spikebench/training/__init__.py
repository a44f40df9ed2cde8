"""Training procedures beyond a learning rule's gradient: adversarial and noise training,
robust fine-tuning and the MS-MPPD regulariser (``robust``), HIRE-SNN's crafted noise
(``hire``), attention-guided pruning (``prune``) and ANN-to-SNN conversion
(``conversion``). The perturbations they craft come from ``spikebench.attacks.perturb``."""
