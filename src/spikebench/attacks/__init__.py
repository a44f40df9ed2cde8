"""Adversarial attacks, each implemented once and used by every suite and study.

- ``perturb``: input gradients and the perturbations built on them (FGSM, PGD-k,
  Gaussian noise, R-FGSM-KL), shared by the attacks and by adversarial training;
- ``art``: the decision wrappers (time-major input, decision logits, the ANN
  counterpart) and the Adversarial Robustness Toolbox's attacks (DeepFool, Square, ...);
- ``ensemble``: gradient routes (surrogates, BPTR, ANN proxy) and the adaptive attack
  ensemble with its gradient-masking checks.
"""
