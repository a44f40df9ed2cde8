r"""FPTT: forward propagation through time (Kag & Saligrama, ICML 2021; for spiking networks
Yin, Corradi, Bohté, Nature Machine Intelligence 2023).

The sequence is cut into windows of ``window`` steps; after each window the optimiser steps
(the harness's ``update``), so the weights change within the sequence. The state carried
into a window is a constant (detached), as in truncated BPTT. Each window's objective is its
own classification loss plus a dynamic regulariser that ties W to a running average W_bar
through a correction term lm, per parameter (the authors' code, rho = 0 by default):

    l_w(W)  = (t1 / T) CE_w + (rho - 1) <W, lm> + (alpha / 2) ||W - W_bar||^2
    after the step:   lm    <- lm - alpha (W - W_bar)
                      W_bar <- (1 - beta) W_bar + beta W - (beta / alpha) lm

CE_w is the mean ``step_ce`` cross-entropy over the window's labelled steps and t1 / T the
window's progress through the sequence (the reference code's weight of later predictions).
W_bar starts at W and lm at 0 (``prepare``) and both are saved with the checkpoint; the
authors' reset of W_bar at every epoch is not done (the harness does not tell a rule where
an epoch begins). Without an ``update`` (analyses, checks) the windows' gradients at fixed
weights are summed and nothing is stepped. Memory grows with the window, not with T.

Check (tests): the published update, written out step by step with the model's step
function on a tiny net and plain SGD, reproduces W, W_bar and lm after one batch.
"""

from __future__ import annotations

import torch

from spikebench.errors import ConfigError
from spikebench.learning_rules.base import LearningRule, RunningScore, StepOutput, step_loss
from spikebench.learning_rules.tbptt import check_stepwise, run_window, windows


class FPTT(LearningRule):
    """FPTT: per-window updates with a dynamic regulariser towards a running average."""

    name = "fptt"
    credit_space = "exact (backprop through layers)"
    credit_time = "within windows + regulariser to a running average; updates every window"

    def __init__(self, burn_in: int = 0, loss: str = "step_ce", window: int = 10,
                 alpha: float = 0.1, beta: float = 0.5, rho: float = 0.0) -> None:
        super().__init__(burn_in, loss)
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigError(f"window (steps per update) must be an integer >= 1, "
                              f"got {window!r}")
        if not alpha > 0 or not 0 < beta <= 1:
            raise ConfigError(f"FPTT needs alpha > 0 and 0 < beta <= 1, got alpha={alpha}, "
                              f"beta={beta}")
        self.window, self.alpha, self.beta, self.rho = window, alpha, beta, rho
        self.sm: dict[str, torch.Tensor] = {}  # W_bar, the running average
        self.lm: dict[str, torch.Tensor] = {}

    def config(self) -> dict:
        return {**super().config(), "window": self.window, "alpha": self.alpha,
                "beta": self.beta, "rho": self.rho}

    def prepare(self, model) -> None:
        check_stepwise(model, self.name)
        with torch.no_grad():
            self.sm = {n: p.detach().clone() for n, p in model.named_parameters()}
            self.lm = {n: torch.zeros_like(p) for n, p in model.named_parameters()}

    @torch.no_grad()
    def regulariser_grads(self, model) -> list[torch.Tensor]:
        """d(regulariser)/dW = (rho - 1) lm + alpha (W - W_bar) per parameter, written out
        rather than taken through autograd (its ~8 operations per parameter made up a tenth
        of a window's time), in the operations autograd of the objective would do."""
        return [(self.rho - 1.0) * self.lm[n] + (0.5 * self.alpha) * (2 * (p - self.sm[n]))
                for n, p in model.named_parameters()]

    @staticmethod
    @torch.no_grad()
    def accumulate(params, ce_grads, reg_grads) -> None:
        """p.grad += dCE_w/dW + d(regulariser)/dW, summed in the order autograd of the whole
        objective sums them, so the float32 bits are the same."""
        for p, ce, reg in zip(params, ce_grads, reg_grads, strict=True):
            g = reg.clone() if ce is None else ce + reg
            p.grad = g if p.grad is None else p.grad.add_(g)

    @torch.no_grad()
    def after_step(self, model) -> None:
        for n, p in model.named_parameters():
            self.lm[n].add_(p - self.sm[n], alpha=-self.alpha)
            self.sm[n].mul_(1.0 - self.beta).add_(p, alpha=self.beta) \
                .add_(self.lm[n], alpha=-self.beta / self.alpha)

    def backward(self, model, x, y: torch.Tensor, update=None) -> StepOutput:
        if not self.sm:
            raise RuntimeError("FPTT.prepare(model) must be called before backward")
        check_stepwise(model, self.name)
        model.zero_grad(set_to_none=True)
        x = model.flatten_input(x)
        steps = x.shape[0]
        score = RunningScore(y, steps, self.burn_in)
        states: list = [None] * len(model.hidden)
        y_prev = None
        params = [p for _, p in model.named_parameters()]
        reg_grads = None  # constant across the windows while nothing is updated
        for t0, t1, z in windows(x, steps, self.window):
            ys = run_window(model, z, states, y_prev)
            w = score.weights[t0:t1]
            total = w.sum()
            ce_grads = [None] * len(params)
            if total > 0:  # the window's mean cross-entropy, weighted by its progress
                ce = (t1 / steps) * step_loss(ys, score.targets[t0:t1], w / total)
                ce_grads = torch.autograd.grad(ce, params, allow_unused=True)
            if reg_grads is None or update is not None:  # the weights moved: again
                reg_grads = self.regulariser_grads(model)
            self.accumulate(params, ce_grads, reg_grads)
            ys = ys.detach()
            score.update_chunk(t0, ys)
            y_prev = ys[-1]
            if update is not None:
                update()
                self.after_step(model)
                model.zero_grad(set_to_none=True)
        loss, correct, count = score.result()
        return StepOutput(loss, None, correct, count, updated=update is not None)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**{f"sm.{n}": v for n, v in self.sm.items()},
                **{f"lm.{n}": v for n, v in self.lm.items()}}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key, value in state.items():
            kind, _, n = key.partition(".")
            target = {"sm": self.sm, "lm": self.lm}.get(kind)
            if target is None or n not in target or target[n].shape != value.shape:
                raise ValueError(f"FPTT state {key!r} {tuple(value.shape)} does not match the "
                                 f"model's parameters {sorted(self.sm)}")
            target[n] = value.to(target[n])
