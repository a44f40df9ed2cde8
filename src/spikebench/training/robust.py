r"""Robust training objectives (docs/suites/robust.md).

``Objective(kind, ...)`` is a training ``Procedure``: what one training step minimises on
a batch (x, y):

- ``mix``: chi CE(f(x), y) + (1 - chi) CE(f(x~), y) + rho L_MPPD (Ding et al.'s joint
  loss). x~ by ``perturbation``: ``none`` (plain training: CE(f(x), y) alone),
  ``gaussian`` (x + sigma N(0, I), unclipped), ``fgsm`` (one step from x + 0.001 N(0, I),
  crafted in eval mode: their AT).
- ``pgd-at``: CE(f(x_PGD), y), PGD-``steps`` from a uniform start (Madry et al.; the
  conversion's base ANN).
- ``trades``: CE(f(x), y) + beta KL(p(x) || p(x_adv)), x_adv by PGD on that KL from
  x + 0.001 N(0, I) (Zhang et al. 2019; beta 6 in the conversion's code).
- ``mart``: MART (Wang et al. 2020; beta 4 for the conversion's base ANN): x' = PGD on
  the CE from a uniform start; BCE(p(x'), y) + beta KL(p(x) || p(x')) (1 - p_y(x)) per
  sample, where BCE = -log p_y(x') - log(1 - max_{k != y} p_k(x')) (``mart_loss``).
- ``finetune``: CE(f(x), y) + beta KL(p(x) || p(x^)), x^ = RFGSM on the KL from
  x + alpha sign(N(0, I)), alpha = eps / 2 (the code's 1/255 at eps 2/255): the
  conversion's post-conversion robust fine-tuning (beta 2).

``ortho_beta`` > 0 adds SNN-RAT's orthogonality regulariser as stable-SNN's AT+Reg
applies it: after every optimiser step, ``orthogonal_retraction``.

MS-MPPD: the membrane potential perturbation of the last spiking layer, from its input
currents in a clean (detached) and a perturbed pass, eps[t] = lambda eps[t-1] +
(I'[t] - I[t]) from eps[0] = 0 (Ding et al.'s Eq.; their code uses the currents before
DLIF's a[t] scaling), and L_MPPD = mean over t, samples and neurons of eps[t]^2.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from spikebench.attacks.perturb import fgsm, gaussian, kl_loss, mode, pgd, rfgsm_kl
from spikebench.errors import ConfigError
from spikebench.training.procedure import Procedure, needs_update

KINDS = ("mix", "pgd-at", "trades", "mart", "finetune")
PERTURBATIONS = ("none", "gaussian", "fgsm")


def mppd_trace(clean: torch.Tensor, perturbed: torch.Tensor, leak: float,
               gain: torch.Tensor | None = None) -> torch.Tensor:
    """eps[t] = leak eps[t-1] + g[t] (I'[t] - I[t]) over [T, B, ...] currents (g = 1 without
    ``gain``): the membrane perturbation of a layer that does not reset."""
    eps, out = torch.zeros_like(clean[0]), []
    for t in range(len(clean)):
        delta = perturbed[t] - clean[t]
        eps = leak * eps + (delta if gain is None else gain[t] * delta)
        out.append(eps)
    return torch.stack(out)


def mppd_loss(clean: torch.Tensor, perturbed: torch.Tensor, leak: float) -> torch.Tensor:
    """L_MPPD: the mean square of ``mppd_trace`` (the clean currents detached)."""
    return mppd_trace(clean.detach(), perturbed, leak).pow(2).mean()


def mart_loss(logits: torch.Tensor, adv_logits: torch.Tensor, y: torch.Tensor,
              beta: float) -> torch.Tensor:
    """MART's loss from clean and adversarial logits [B, C] (log-softmax throughout; the
    reference adds 1e-4 and 1e-12 inside its logs, which changes nothing but far tails)."""
    log_adv = F.log_softmax(adv_logits, -1)
    log_nat = F.log_softmax(logits, -1)
    others = log_adv.scatter(1, y[:, None], float("-inf")).max(-1).values
    # -log(1 - p) as -log1p(-exp(log p)), exact where p is near 0 or 1
    bce = F.nll_loss(log_adv, y, reduction="none") - torch.log1p(
        -others.exp().clamp(max=1 - 1e-7))
    kl = (log_nat.exp() * (log_nat - log_adv)).sum(-1)
    true_nat = log_nat.gather(1, y[:, None]).squeeze(1).exp()
    return (bce + beta * kl * (1 - true_nat)).mean()


@torch.no_grad()
def orthogonal_retraction(model: nn.Module, beta: float, share: float = 0.3,
                          wide: int = 200) -> None:
    """SNN-RAT's orthogonality update of every conv and Linear weight W [out, in...]:
    W <- (1 + beta) W - beta W W^T W, one gradient step of size beta on
    ||W W^T - I||^2 / 4; for a Linear of at least ``wide`` rows on a random ``share`` of
    its rows (drawn from torch's generator each call), as the reference does."""
    for m in model.modules():
        if not isinstance(m, nn.Conv2d | nn.Linear):
            continue
        w = m.weight.view(m.weight.shape[0], -1)
        if isinstance(m, nn.Linear) and w.shape[0] >= wide:
            rows = torch.randperm(w.shape[0], device=w.device)[:int(share * w.shape[0])]
            sub = w[rows]
            w[rows] = (1 + beta) * sub - beta * (sub @ sub.T) @ sub
        else:
            w.copy_((1 + beta) * w - beta * (w @ w.T) @ w)


@dataclass(frozen=True)
class Objective(Procedure):
    name = "objective"
    kind: str = "mix"
    perturbation: str = "none"
    eps: float = 0.05  # L-inf radius of crafted inputs (fgsm, pgd-at, trades, finetune)
    sigma: float = 0.1  # Gaussian noise
    chi: float = 0.5  # weight of the clean CE in "mix"
    rho: float = 0.0  # weight of L_MPPD in "mix" (needs a spiking model)
    beta: float = 6.0  # KL weight (trades, mart, finetune)
    steps: int = 3  # PGD steps (pgd-at, trades, mart)
    ortho_beta: float = 0.0  # SNN-RAT's orthogonality update after each step (0: none)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"objective kind is one of {KINDS}, got {self.kind!r}")
        if self.perturbation not in PERTURBATIONS:
            raise ConfigError(f"perturbation is one of {PERTURBATIONS}, got "
                              f"{self.perturbation!r}")
        if self.rho and (self.kind != "mix" or self.perturbation == "none"):
            raise ConfigError("rho (MS-MPPD) needs kind 'mix' with a perturbation")
        if not 0 <= self.chi <= 1:
            raise ConfigError(f"chi must lie in [0, 1], got {self.chi}")

    def loss(self, model, x, y):
        return objective_loss(model, x, y, self)

    def backward(self, model, x, y, update=None):
        if not self.ortho_beta:
            return super().backward(model, x, y, update)
        out = super().backward(model, x, y)
        needs_update(self, update)()
        orthogonal_retraction(model, self.ortho_beta)
        return replace(out, updated=True)

    def config(self) -> dict:
        config = super().config()
        if not self.ortho_beta:  # added later: configs without it read as before
            del config["ortho_beta"]
        return config


def _last_neuron(model: nn.Module):
    neurons = getattr(model, "neurons", lambda: [])()
    if not neurons:
        raise ConfigError("MS-MPPD (rho > 0) needs a spiking model with neuron layers")
    return neurons[-1]


def objective_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, obj: Objective,
                   clip=(0.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, clean logits) of one batch; the caller calls backward."""
    if obj.kind in ("pgd-at", "mart"):
        adv = pgd(model, x, y, obj.eps, obj.steps, clip=clip)
        if obj.kind == "mart":
            logits = model(x)
            return mart_loss(logits, model(adv), y, obj.beta), logits
        with torch.no_grad():
            logits = model(x)
        return F.cross_entropy(model(adv), y), logits
    if obj.kind in ("trades", "finetune"):
        if obj.kind == "trades":
            with torch.no_grad(), mode(model, False):
                reference = model(x)
            start = (x + 0.001 * torch.randn_like(x)).clamp(*clip)
            adv = pgd(model, x, reference, obj.eps, obj.steps, loss=kl_loss, start=start,
                      clip=clip)
        else:
            adv = rfgsm_kl(model, x, obj.eps, obj.eps / 2, clip=clip)
        logits = model(x)
        return F.cross_entropy(logits, y) + obj.beta * kl_loss(model(adv), logits), logits
    if obj.perturbation == "none":
        logits = model(x)
        return F.cross_entropy(logits, y), logits
    if obj.perturbation == "gaussian":
        x_pert = gaussian(x, obj.sigma, clip=None)
    else:
        x_pert = fgsm(model, x, y, obj.eps, clip=clip, noise=0.001)
    neuron = _last_neuron(model) if obj.rho else None
    if neuron is not None:
        neuron.record = True
    try:
        logits = model(x)
        clean = neuron.last_current if neuron is not None else None
        pert_logits = model(x_pert)
        loss = (obj.chi * F.cross_entropy(logits, y)
                + (1 - obj.chi) * F.cross_entropy(pert_logits, y))
        if neuron is not None:
            loss = loss + obj.rho * mppd_loss(clean, neuron.last_current, neuron.lam())
    finally:
        if neuron is not None:
            neuron.record, neuron.last_current = False, None
    return loss, logits
