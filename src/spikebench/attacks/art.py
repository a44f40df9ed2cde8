"""One attack layer for every study: FGSM (ours), PGD, Square and DeepFool (from the
adversarial-robustness-toolbox, ART), on spiking models or their ANN counterparts.

Attacks see a batch-first classifier: ``Classifier`` turns a trained ``SpikingMLP`` into
``x [B, ...] -> logits [B, C]`` with the suite's common decision (readout averaged over
time after ``burn_in``). Inputs are either sample-major event frames ``[B, T, ...]`` (any
shape whose trailing elements split into T steps of the model's input size, so ART's
4-D ``[B, T*2, H, W]`` view works too), or static images ``[B, C, H, W]`` that an encoder
turns into spikes. A stochastic encoder (Bernoulli rate coding) is attacked with
expectation over transformation (EOT): the classifier averages its logits over ``eot``
independent encodings, so every gradient- or query-based attack sees the expected
decision.

FGSM, two variants (Table III):

- ``ann``: crafted on the SNN's ANN counterpart (Sharmin et al. 2019), built from the SNN's
  own weights (see ``ANNCounterpart``), then applied to the SNN (a transfer attack);
- ``snn``: white-box, through the SNN itself with its surrogate gradient.

Perturbed inputs are clipped to the input's valid range ``clip = (lo, hi)``: images
[0, 1]; event frames [0, c_max], c_max the largest per-bin event count in the data
(counts cannot be negative; the perturbed frames are real-valued, as in the paper).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spikebench.attacks import perturb
from spikebench.learning_rules.base import decision_logits
from spikebench.models import device_of
from spikebench.models.mlp import time_major
from spikebench.registry import Registry

EPSILONS = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05)  # the locality paper's FGSM grid


class Classifier(nn.Module):
    """Batch-first logits of a spiking model: the common decision rule.

    ``encode``: ``[B, ...] -> [T, B, ...]`` for static inputs (None: the input already
    holds T frames); ``eot``: encodings averaged per call (>1 only for stochastic ones).
    """

    def __init__(self, model: nn.Module, burn_in: int = 0,
                 encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 eot: int = 1) -> None:
        super().__init__()
        if eot < 1:
            raise ValueError(f"eot must be >= 1, got {eot}")
        self.model, self.burn_in, self.encode, self.eot = model, burn_in, encode, eot

    def time_major(self, x: torch.Tensor) -> torch.Tensor:
        """[B, ...] -> [T, B, n_in] for inputs that carry their time steps."""
        return time_major(x, self.model.sizes[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.model.readout.weight.dtype)
        if self.encode is None:
            return decision_logits(self.model(self.time_major(x)), self.burn_in)
        logits = [decision_logits(self.model(self.encode(x)), self.burn_in)
                  for _ in range(self.eot)]
        return torch.stack(logits).mean(0)


class ANNCounterpart(nn.Module):
    """The ANN counterpart of a spiking MLP, from the SNN's weights (Sharmin et al. 2019).

    The same time loop on the same input, with each spiking layer replaced by ReLU units of
    the rate an integrate-and-fire neuron with subtractive reset fires for a given input
    current (rate = current / threshold, no leak, no synaptic filter, no spikes):

        h_k[t] = ReLU((W_k h_{k-1}[t] + V_k h_k[t-1]) / theta)     (V_k: REC only)

    and the SNN's own leaky readout y[t] = kappa y[t-1] + W_o h[t] + b, decided like the
    SNN (mean over time after burn-in). It is smooth almost everywhere, so its input
    gradient exists without a surrogate. Static inputs go through ``encode`` (the suites
    use direct encoding: the expected value of a rate code). ``max_rate`` caps the units'
    rates (1: at most one spike per step, what a spiking unit can fire; None: plain ReLU,
    the default).
    """

    def __init__(self, model: nn.Module, burn_in: int = 0,
                 encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 max_rate: float | None = None) -> None:
        super().__init__()
        self.snn, self.burn_in, self.encode = model, burn_in, encode
        self.threshold = float(getattr(model.params, "threshold", 1.0))
        self.max_rate = max_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        snn = self.snn
        x = x.to(snn.readout.weight.dtype)
        x = self.encode(x) if self.encode is not None else Classifier(snn).time_major(x)
        x = snn.flatten_input(x)
        h_prev = [x.new_zeros(x.shape[1], layer.weight.shape[0]) for layer in snn.hidden]
        y = x.new_zeros(x.shape[1], snn.sizes[-1])
        ys = []
        for x_t in x:
            h = x_t
            for k, layer in enumerate(snn.hidden):
                cur = h @ layer.weight.t()
                rec = layer.recurrent_matrix()
                if rec is not None:
                    cur = cur + h_prev[k] @ rec.t()
                h = torch.relu(cur / self.threshold)
                if self.max_rate is not None:
                    h = h.clamp(max=self.max_rate)
                h_prev[k] = h
            y = snn.readout.step(h, y)
            ys.append(y)
        return decision_logits(torch.stack(ys), self.burn_in)


# -- attacks: (classifier, x, y, eps, clip) -> x_adv ------------------------------------
Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor, float, tuple], torch.Tensor]


def fgsm(clf: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
         clip: tuple[float, float]) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015), L-inf: x + eps sign(grad), through
    the one implementation (``attacks.perturb.fgsm``), every module's mode left as it is."""
    if eps == 0:
        return x.detach().clone()
    return perturb.fgsm(clf, x, y, eps, clip, train_mode=None)


@dataclass(frozen=True)
class ARTAttack:
    """An attack from the adversarial-robustness-toolbox on our classifier wrapper."""

    name: str
    options: tuple = ()  # extra keyword arguments, as (key, value) pairs

    def build(self, estimator, eps: float):
        from art.attacks.evasion import DeepFool, ProjectedGradientDescent, SquareAttack

        opts = dict(self.options)
        if self.name == "pgd":
            return ProjectedGradientDescent(
                estimator, norm=np.inf, eps=eps, eps_step=eps / 4,
                max_iter=opts.get("max_iter", 10), num_random_init=0,
                batch_size=opts.get("batch_size", 128), verbose=False)
        if self.name == "square":
            return SquareAttack(estimator, norm=np.inf, eps=eps,
                                max_iter=opts.get("max_iter", 100), nb_restarts=1,
                                batch_size=opts.get("batch_size", 128), verbose=False)
        if self.name in ("apgd-ce", "apgd-dlr"):
            from art.attacks.evasion import AutoProjectedGradientDescent

            loss = "cross_entropy" if self.name == "apgd-ce" else "difference_logits_ratio"
            return AutoProjectedGradientDescent(
                estimator, norm=np.inf, eps=eps, eps_step=2 * eps,
                max_iter=opts.get("max_iter", 100), nb_random_init=1,
                targeted=opts.get("targeted", False),
                batch_size=opts.get("batch_size", 128), loss_type=loss, verbose=False)
        if self.name == "deepfool":
            return DeepFool(estimator, max_iter=opts.get("max_iter", 100),
                            epsilon=opts.get("overshoot", 0.02),
                            batch_size=opts.get("batch_size", 128), verbose=False)
        raise ValueError(f"unknown ART attack {self.name!r}")

    def __call__(self, clf: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                 clip: tuple[float, float]) -> torch.Tensor:
        if eps == 0 and self.name != "deepfool":
            return x.detach().clone()
        estimator = art_classifier(clf, x, clip)
        shape = x.shape
        flat = art_view(x).detach().cpu().numpy().astype(np.float32)
        adv = self.build(estimator, eps).generate(flat, y=y.cpu().numpy())
        return torch.from_numpy(adv).to(x.dtype).reshape(shape).to(x.device)


def art_view(x: torch.Tensor) -> torch.Tensor:
    """ART's image attacks want [B, C, H, W]: event frames [B, T, P, H, W] -> [B, T*P, H, W]."""
    return x.flatten(1, 2) if x.dim() == 5 else x


def art_classifier(clf: nn.Module, x: torch.Tensor, clip: tuple[float, float]):
    """Wrap ``clf`` as ART's PyTorchClassifier for inputs shaped like ``art_view(x)``."""
    try:
        from art.estimators.classification import PyTorchClassifier
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise ImportError("PGD, Square and DeepFool need adversarial-robustness-toolbox "
                          "(pip install adversarial-robustness-toolbox)") from err
    shape = tuple(art_view(x).shape[1:])
    device = device_of(clf)
    with torch.no_grad():
        n_classes = int(clf(x[:1].to(device)).shape[-1])
    # ART computes on "gpu" (its current CUDA device) or "cpu": the classifier's own device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return PyTorchClassifier(model=clf.float(), loss=nn.CrossEntropyLoss(), input_shape=shape,
                             nb_classes=n_classes, clip_values=clip,
                             device_type="gpu" if device.type == "cuda" else "cpu")


ATTACKS: Registry[Attack] = Registry("attack")
ATTACKS.register("fgsm", fgsm)
ATTACKS.register("pgd", ARTAttack("pgd"))
ATTACKS.register("square", ARTAttack("square"))
ATTACKS.register("deepfool", ARTAttack("deepfool"))
ATTACKS.register("apgd-ce", ARTAttack("apgd-ce"))
ATTACKS.register("apgd-dlr", ARTAttack("apgd-dlr"))


@torch.no_grad()
def predict(clf: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The decisions of ``clf`` on ``x``, computed on the classifier's device, returned on
    the input's."""
    device = device_of(clf)
    return torch.cat([clf(x[i:i + batch_size].to(device)).argmax(-1).to(x.device)
                      for i in range(0, len(x), batch_size)])


def attack_accuracy(
    target: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    attack: str | Attack = "fgsm",
    source: nn.Module | None = None,
    clip: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 128,
) -> dict[str, float]:
    """Accuracy of ``target`` on ``x`` perturbed by ``attack`` crafted on ``source``
    (default: the target itself, white-box), and the success rate over the samples the
    target classified correctly before the attack. Computed on the source's device."""
    attack_fn = ATTACKS.get(attack) if isinstance(attack, str) else attack
    source = source or target
    device = device_of(source)
    clean_hits = adv_hits = flipped = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].float().to(device), y[i:i + batch_size].to(device)
        # common random numbers: a stochastic model (rate-coded input) sees the same
        # encoding noise for the clean and the perturbed batch, so a change of decision
        # comes from the perturbation, not from a new draw
        noise_seed = int(torch.randint(2**31 - 1, (), device="cpu"))
        torch.manual_seed(noise_seed)
        clean = predict(target, xb) == yb
        x_adv = attack_fn(source, xb, yb, eps, clip)
        torch.manual_seed(noise_seed)
        adv = predict(target, x_adv) == yb
        clean_hits += int(clean.sum())
        adv_hits += int(adv.sum())
        flipped += int((clean & ~adv).sum())
    return {"acc": adv_hits / max(len(x), 1), "clean_acc": clean_hits / max(len(x), 1),
            "success_rate": flipped / max(clean_hits, 1)}
