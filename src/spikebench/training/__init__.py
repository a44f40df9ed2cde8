"""Training procedures that wrap a model's gradient computation: adversarial and noise
training, robust fine-tuning after conversion, the MS-MPPD regulariser
(``training.robust``) and the input perturbations they share with the attacks
(``training.perturb``)."""
