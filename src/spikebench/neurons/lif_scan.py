r"""The LIF recurrence over a whole sequence as one autograd Function (a fused scan).

Given the synaptic input of every step, ``current`` [T, B, n] (W x[t], computed for all T at
once by one GEMM in feed-forward layers), ``lif_scan`` runs ``lif_step``'s recurrence

    I[t] = alpha I[t-1] + current[t]
    U[t] = beta U[t-1] + gain I[t] - theta s[t-1]        (reset "subtract")
    U[t] = beta U[t-1] (1 - s[t-1]) + gain I[t]          (reset "zero")
    s[t] = spike(U[t] - theta)

without building an autograd graph per step: the forward keeps only U (the spikes follow
from it), and the backward is the reverse scan of the adjoints

    gs[t] = dL/ds[t] + gU[t+1] dU[t+1]/ds[t]   (-theta, or -beta U[t]; 0 with detach_reset)
    gU[t] = gs[t] spike'(U[t] - theta) + gU[t+1] dU[t+1]/dU[t]   (beta, or beta (1 - s[t]))
    gI[t] = gain gU[t] + alpha gI[t+1],   dL/dcurrent[t] = gI[t]

It equals autograd through ``lif_step`` unrolled (the reference; tests: float64, 1e-12,
both resets, detached or not, every surrogate).
"""

from __future__ import annotations

import torch

from spikebench.neurons.surrogate import SMOOTH, spike_derivative


def _fire(u_minus: torch.Tensor, surrogate: str, slope: float) -> torch.Tensor:
    """The forward value of ``spike`` (no graph)."""
    if surrogate == SMOOTH:
        return torch.sigmoid(slope * u_minus)
    return (u_minus > 0).to(u_minus.dtype)


class _LIFScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current: torch.Tensor, p) -> torch.Tensor:
        steps = current.shape[0]
        u_all = torch.empty_like(current)
        s_all = torch.empty_like(current)
        i = torch.zeros_like(current[0])
        u = torch.zeros_like(current[0])
        s = torch.zeros_like(current[0])
        for t in range(steps):
            i = p.alpha * i + current[t]
            if p.reset == "subtract":
                u = p.beta * u + p.gain * i - p.threshold * s
            else:
                u = p.beta * u * (1.0 - s) + p.gain * i
            s = _fire(u - p.threshold, p.surrogate, p.slope)
            u_all[t] = u
            s_all[t] = s
        ctx.save_for_backward(u_all, s_all)
        ctx.p = p
        return s_all

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor):
        u_all, s_all = ctx.saved_tensors
        p = ctx.p
        deriv = spike_derivative(u_all - p.threshold, p.surrogate, p.slope)
        grad_cur = torch.empty_like(grad_s)
        g_u_next = torch.zeros_like(grad_s[0])
        g_i_next = torch.zeros_like(grad_s[0])
        subtract = p.reset == "subtract"
        for t in range(grad_s.shape[0] - 1, -1, -1):
            g_s = grad_s[t]
            if not p.detach_reset and t + 1 < grad_s.shape[0]:
                g_s = g_s - g_u_next * (p.threshold if subtract else p.beta * u_all[t])
            carry = p.beta if subtract else p.beta * (1.0 - s_all[t])
            g_u = g_s * deriv[t] + g_u_next * carry
            g_i = p.gain * g_u + p.alpha * g_i_next
            grad_cur[t] = g_i
            g_u_next, g_i_next = g_u, g_i
        return grad_cur, None


def lif_scan(current: torch.Tensor, p) -> torch.Tensor:
    """Spikes [T, B, n] of LIF neurons (parameters ``p``: LIFParams) driven by ``current``
    [T, B, n], from zero state; differentiable in ``current`` (see the module doc)."""
    return _LIFScan.apply(current, p)
