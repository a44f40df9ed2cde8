r"""Attention-guided compression (AGC; Kundu, Datta, Pedram, Beerel, WACV 2021,
"Spike-Thrift"; docs/suites/robust.md): one-shot pruning of a convolutional
network to one global density, layer-wise densities derived automatically, fine-tuned
under the guidance of an uncompressed teacher's attention maps.

Attention maps (attention transfer, Zagoruyko & Komodakis 2017; the form the reference
note assumes): for the output A of the j-th convolutional activation (an SNN's spike
rates averaged over time, an ANN's ReLU outputs), Q^j = vec(sum_c |A_c|^2) per sample,
normalised to unit L2 norm. The guidance loss is

    L_AT = (beta / 2) sum_j mean_n || Q_S^j / ||Q_S^j|| - Q_M^j / ||Q_M^j|| ||_2

between the student S and the teacher M on the same input.

Layer densities (the paper gives no rule; this one is ours, documented): each layer's
importance is the mean first-order saliency |W * dCE/dW| of the unpruned student's weights
(the teacher's, in eval mode). The attention term is left out because it is exactly zero
there: the student is the teacher's copy (spikebench <= 0.1 said "under CE + L_AT", and
its non-zero attention term came only from BatchNorm's batch statistics in train mode).
Layer l keeps a fraction d_l = min(1, c imp_l / max imp) of its weights, with c set by
bisection so that all layers together keep the global target. Densities thus follow the
importance ranking, and the total meets the target up to rounding. Within a layer the
largest-magnitude weights are kept (one shot: masks fixed from then on); ``Pruner`` keeps
pruned weights at zero through fine-tuning (their gradients are masked and the weights
re-zeroed after every optimizer step), so they are zero in every checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spikebench.attacks.perturb import mode
from spikebench.errors import ConfigError
from spikebench.learning_rules import StepOutput
from spikebench.models import device_of
from spikebench.neurons import NeuronDynamics
from spikebench.training.procedure import Procedure, needs_update


def prunable(model: nn.Module) -> list[nn.Module]:
    """The connection layers whose weights are pruned: every conv and Linear (readout
    included)."""
    return [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def maps_of(outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """The normalised attention maps [B, H W] of the convolutional activations among
    ``outputs``: an SNN's spikes [T, B, C, H, W] as rates over their steps, an ANN's
    [B, C, H, W] as they are (fully connected ones are left out)."""
    acts = [out.mean(0) if out.dim() == 5 else out for out in outputs if out.dim() in (4, 5)]
    return [F.normalize(a.pow(2).sum(1).flatten(1), dim=1) for a in acts]


def attention_maps(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list]:
    """(logits, the normalised attention maps [B, H W] of every convolutional activation)."""
    acts = [m for m in model.modules() if isinstance(m, NeuronDynamics | nn.ReLU)]
    outputs: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda module, args, out: outputs.append(out))
               for m in acts]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return logits, maps_of(outputs)


def attention_guidance(teacher: nn.Module, beta: float):
    """HIRE-SNN's ``extra_loss`` for AGC + HIRE: L_AT between the maps of the period's own
    spikes (the student's rates over the period's steps, no extra pass) and the fixed
    teacher's maps of the same input (its T steps from rest, without gradients)."""

    def extra(model, inp: torch.Tensor, spikes: list[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            _, t_maps = attention_maps(teacher, inp)
        return attention_loss(maps_of(spikes), t_maps, beta)

    return extra


def attention_loss(student: list[torch.Tensor], teacher: list[torch.Tensor],
                   beta: float) -> torch.Tensor:
    if len(student) != len(teacher):
        raise ConfigError(f"student and teacher have {len(student)} and {len(teacher)} "
                          "convolutional activations: AGC needs the same architecture")
    return beta / 2 * sum((s - t.detach()).norm(dim=1).mean() for s, t in
                          zip(student, teacher, strict=True))


def guided_loss(student, teacher, x, y, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE + L_AT, the student's logits) on one batch."""
    logits, s_maps = attention_maps(student, x)
    with torch.no_grad():
        _, t_maps = attention_maps(teacher, x)
    return F.cross_entropy(logits, y) + attention_loss(s_maps, t_maps, beta), logits


class Guided(Procedure):
    """AGC fine-tuning as a procedure: one step on CE + L_AT (``guided_loss``) against the
    fixed ``teacher`` (None: on CE alone, the unguided ablation and sparse SNN training),
    then ``after_step()`` (the ``Pruner``'s masks)."""

    name = "agc"

    def __init__(self, teacher: nn.Module | None, beta: float, after_step=None) -> None:
        self.teacher, self.beta, self.after_step = teacher, beta, after_step

    def loss(self, model, x, y):
        if self.teacher is None:
            logits = model(x)
            return F.cross_entropy(logits, y), logits
        return guided_loss(model, self.teacher, x, y, self.beta)

    def backward(self, model, x, y, update=None) -> StepOutput:
        update = needs_update(self, update)
        out = super().backward(model, x, y)
        update()
        if self.after_step is not None:
            self.after_step()
        out.updated = True
        return out

    def config(self) -> dict:
        return {"beta": self.beta}


def layer_importance(student, batches) -> list[float]:
    """Mean |W dCE/dW| per prunable layer of the unpruned student, in eval mode (running
    BatchNorm statistics), over ``batches`` (moved to the student's device). The student
    starts as its teacher's copy, so the attention term of the fine-tuning loss is zero
    here and adds nothing to the saliency: CE's alone is measured."""
    layers = prunable(student)
    sal = [0.0] * len(layers)
    device = device_of(student)
    with mode(student, False):
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            student.zero_grad(set_to_none=True)
            F.cross_entropy(student(x), y).backward()
            for k, m in enumerate(layers):
                sal[k] += float((m.weight.detach() * m.weight.grad).abs().mean())
    student.zero_grad(set_to_none=True)
    return sal


def layer_densities(importance: list[float], sizes: list[int], density: float) -> list[float]:
    """d_l = min(1, c imp_l / max imp) with sum d_l n_l = density sum n_l (bisection on c)."""
    if not 0 < density <= 1:
        raise ConfigError(f"the global density must lie in (0, 1], got {density}")
    imp = torch.tensor(importance, dtype=torch.float64)
    n = torch.tensor(sizes, dtype=torch.float64)
    if not (imp > 0).all():
        imp = imp.clamp(min=float(imp[imp > 0].min()) if (imp > 0).any() else 1.0)
    rel = imp / imp.max()
    want = density * float(n.sum())

    def kept(c: float) -> float:
        return float((torch.clamp(c * rel, max=1.0) * n).sum())

    lo, hi = 0.0, 1.0
    while kept(hi) < want and hi < 1e12:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if kept(mid) < want else (lo, mid)
    return torch.clamp(hi * rel, max=1.0).tolist()


class Pruner:
    """Masks fixed once; ``apply()`` zeroes the pruned weights (call it after each
    optimizer step); gradients of pruned weights are zeroed by hooks."""

    def __init__(self, model: nn.Module, densities: list[float] | None) -> None:
        """Each layer keeps its largest-magnitude fraction d_l of ``densities``; None:
        the weights that are nonzero now (a pruned network's masks, kept through its
        conversion: ``0 * theta`` stays 0)."""
        self.layers = prunable(model)
        if densities is not None and len(densities) != len(self.layers):
            raise ConfigError(f"{len(densities)} densities for {len(self.layers)} layers")
        self.masks = []
        for k, m in enumerate(self.layers):
            if densities is None:
                self.masks.append(m.weight.detach() != 0)
                continue
            w = m.weight.detach().abs().flatten()
            keep = max(1, round(densities[k] * w.numel()))
            mask = torch.zeros_like(w, dtype=torch.bool)
            mask[torch.topk(w, keep).indices] = True
            self.masks.append(mask.view_as(m.weight))
        self.handles = [m.weight.register_hook(lambda g, mask=mask: g * mask)
                        for m, mask in zip(self.layers, self.masks, strict=True)]
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for m, mask in zip(self.layers, self.masks, strict=True):
            m.weight.mul_(mask)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def density(self) -> float:
        kept = sum(int(m.sum()) for m in self.masks)
        return kept / sum(m.numel() for m in self.masks)


def nonzero_weights(model: nn.Module) -> int:
    return sum(int((m.weight != 0).sum()) for m in prunable(model))


def compression_ratio(model: nn.Module) -> float:
    """All prunable weights / the nonzero ones."""
    total = sum(m.weight.numel() for m in prunable(model))
    return total / max(nonzero_weights(model), 1)
