r"""The LIF recurrence over a whole sequence as one autograd Function (a fused scan).

Given the synaptic input of every step, ``current`` [T, B, n] (W x[t], computed for all T at
once by one GEMM), and in recurrent layers the masked recurrent matrix ``rec`` = V,
``lif_scan`` runs ``lif_step``'s recurrence

    I[t] = alpha I[t-1] + current[t] (+ V s[t-1])
    U[t] = beta U[t-1] + gain I[t] - theta s[t-1]        (reset "subtract")
    U[t] = beta U[t-1] (1 - s[t-1]) + gain I[t]          (reset "zero")
    s[t] = spike(U[t] - theta)

without building an autograd graph per step: the forward keeps only U (the spikes follow
from it), and the backward is the reverse scan of the adjoints

    gs[t] = dL/ds[t] + gU[t+1] dU[t+1]/ds[t]   (-theta, or -beta U[t]; 0 with detach_reset)
            (+ gI[t+1] V in recurrent layers: s[t] drives I[t+1])
    gU[t] = gs[t] spike'(U[t] - theta) + gU[t+1] dU[t+1]/dU[t]   (beta, or beta (1 - s[t]))
    gI[t] = gain gU[t] + alpha gI[t+1],   dL/dcurrent[t] = gI[t]
    dL/dV = sum_t gI[t+1]^T s[t]                 (one GEMM after the scan)

It equals autograd through ``lif_step`` unrolled (the reference; tests: float64, 1e-12,
both resets, detached or not, every surrogate).
"""

from __future__ import annotations

import torch

from spikebench import native
from spikebench.neurons.surrogate import SMOOTH, spike_derivative


def _fire(u_minus: torch.Tensor, surrogate: str, slope: float) -> torch.Tensor:
    """The forward value of ``spike`` (no graph)."""
    if surrogate == SMOOTH:
        return torch.sigmoid(slope * u_minus)
    return (u_minus > 0).to(u_minus.dtype)


def _compiled(p, *tensors) -> bool:
    """Whether the compiled loops (spikebench.native) take this scan: a hard threshold (the
    smooth surrogate fires a sigmoid), CPU tensors of one float dtype, not empty; and
    SPIKEBENCH_NATIVE not 0."""
    return (p.surrogate != SMOOTH and tensors[0].numel() > 0
            and native.usable(*tensors))


@torch.no_grad()
def lif_run(current: torch.Tensor, p, rec: torch.Tensor | None = None, state=None,
            compiled: bool = True):
    """The forward recurrence without a graph, from ``state`` ((I, U, s) of the step before;
    None: zero): returns U [T, B, n], s [T, B, n] and the state (I, U, s) after the last
    step. The fused scan's forward and the online rules' chunked forward (online.py).
    ``compiled``: the C loop where it applies (``_compiled``; the same bits), else this
    Python loop, its reference."""
    rec_t = rec.t() if rec is not None else None
    if compiled and _compiled(p, current, rec_t, *(state or ())):
        return native.lif_forward(current, p, rec_t, state)
    u_all = torch.empty_like(current)
    s_all = torch.empty_like(current)
    if state is None:
        i, u, s = (torch.zeros_like(current[0]) for _ in range(3))
        carried = False  # s[-1] = 0: no recurrent input at the first step
    else:
        i, u, s = state
        carried = True
    for t in range(current.shape[0]):
        if rec_t is not None and (t > 0 or carried):
            i = torch.addmm(current[t], s, rec_t).add_(i, alpha=p.alpha)
        else:
            i = p.alpha * i + current[t]
        if p.reset == "subtract":
            u = p.beta * u + p.gain * i - p.threshold * s
        else:
            u = p.beta * u * (1.0 - s) + p.gain * i
        s = _fire(u - p.threshold, p.surrogate, p.slope)
        u_all[t] = u
        s_all[t] = s
    return u_all, s_all, (i, u, s)


def lif_adjoint(grad_s: torch.Tensor, u_all: torch.Tensor, s_all: torch.Tensor, p,
                rec: torch.Tensor | None = None, compiled: bool = True) -> torch.Tensor:
    """dL/dcurrent [T, B, n] from dL/ds [T, B, n]: the reverse scan of the module doc, in C
    where it applies (``_compiled``), else this Python loop, its reference."""
    if compiled and _compiled(p, grad_s, u_all, s_all, rec):
        deriv = (None if p.surrogate in native.SURROGATE_KINDS
                 else spike_derivative(u_all - p.threshold, p.surrogate, p.slope))
        return native.lif_backward(grad_s, u_all, s_all, deriv, p, rec)
    deriv = spike_derivative(u_all - p.threshold, p.surrogate, p.slope)
    grad_cur = torch.empty_like(grad_s)
    g_u_next = torch.zeros_like(grad_s[0])
    g_i_next = torch.zeros_like(grad_s[0])
    subtract = p.reset == "subtract"
    for t in range(grad_s.shape[0] - 1, -1, -1):
        g_s = grad_s[t]
        if t + 1 < grad_s.shape[0]:
            if not p.detach_reset:
                g_s = g_s - g_u_next * (p.threshold if subtract else p.beta * u_all[t])
            if rec is not None:
                g_s = torch.addmm(g_s, g_i_next, rec)
        carry = p.beta if subtract else p.beta * (1.0 - s_all[t])
        g_u = g_s * deriv[t] + g_u_next * carry
        g_i = p.gain * g_u + p.alpha * g_i_next
        grad_cur[t] = g_i
        g_u_next, g_i_next = g_u, g_i
    return grad_cur


class _LIFScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current: torch.Tensor, rec: torch.Tensor | None, p, state=None):
        u_all, s_all, last = lif_run(current, p, rec, state)
        s0 = state[2] if state is not None else None
        ctx.save_for_backward(u_all, s_all, rec, s0)
        ctx.p = p
        ctx.mark_non_differentiable(last[0], last[1])
        return s_all, last[0], last[1]

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor, _grad_i, _grad_u):
        u_all, s_all, rec, s0 = ctx.saved_tensors
        grad_cur = lif_adjoint(grad_s, u_all, s_all, ctx.p, rec)
        grad_rec = None
        if rec is not None and ctx.needs_input_grad[1]:
            n = rec.shape[0]
            grad_rec = grad_cur[1:].reshape(-1, n).t() @ s_all[:-1].reshape(-1, n)
            if s0 is not None:  # a carried state: s[-1] drove I[0]
                grad_rec = grad_rec.addmm_(grad_cur[0].t(), s0)
        return grad_cur, grad_rec, None, None


def lif_scan(current: torch.Tensor, p, rec: torch.Tensor | None = None) -> torch.Tensor:
    """Spikes [T, B, n] of LIF neurons (parameters ``p``: LIFParams) driven by ``current``
    [T, B, n] and, in a recurrent layer, by their own spikes through ``rec`` [n, n] (the
    masked V), from zero state; differentiable in ``current`` and ``rec`` (module doc)."""
    return _LIFScan.apply(current, rec, p)[0]


def lif_scan_from(current: torch.Tensor, p, rec: torch.Tensor | None, state):
    """``lif_scan`` from a carried ``state`` ((I, U, s) of the step before, a constant: no
    gradient flows into it; None: zero): (spikes [T, B, n], the state after the last step,
    detached). Truncated BPTT runs its windows with it."""
    s_all, i, u = _LIFScan.apply(current, rec, p, state)
    return s_all, (i, u, s_all[-1].detach())
