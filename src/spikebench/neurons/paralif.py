r"""ParaLIF (Yarga & Wood): a LIF-like neuron without reset whose membrane is computed for all
time steps at once.

    I[t] = alpha I[t-1] + X[t],   m[t] = beta m[t-1] + (1 - beta) I[t]   (X = W x)

Both filters are linear, so m = h * X with the causal kernel
h[t] = (1 - beta) (beta^(t+1) - alpha^(t+1)) / (beta - alpha)  (limit (1-beta)(t+1) beta^t
when alpha = beta). ``membrane`` says how it is applied: ``fft`` (FFT of length 2T, no
wrap-around) or ``chunked`` (the chunked scan of state-space models: within chunks of K
steps a [K, K] Toeplitz matrix of h per neuron, between chunks the state (I, m) carried by
a short scan over the T/K chunks); ``auto`` takes the chunked scan from T >= 512 steps,
where it measured faster on this CPU (benchmarks/test_bench_paralif.py). Both equal the
step-by-step recurrence to float64 rounding (tests). alpha and beta are learnable per
neuron (through a sigmoid), and the gradient reaches them through h.

Spike functions (``spike_fn``) on the potential relative to the threshold, u = m - theta:

- ``SB``: sigmoid then Bernoulli: s ~ Bernoulli(sigmoid(u)), straight-through gradient of
  sigmoid(u);
- ``GS``: Gumbel-softmax (binary concrete): soft = sigmoid((u + logistic noise) / tau),
  s = 1[soft > 1/2] forward, gradient of soft backward;
- ``D``: delta: spike where the normalised potential sigmoid(u) rises by more than
  ``delta`` since the previous step (surrogate gradient);
- ``T``: threshold: s = H(u) with the surrogate derivative of ``surrogate`` / ``slope``.

Recurrent variant: two parallel passes; the second adds V s1[t-1] (the first pass's
spikes, shifted by one step) to the input. This is not the sequential recurrent LIF: the
recurrent input comes from the first pass's spikes, not from the final ones.

ParaLIF has no step function: it trains with BPTT (autograd through the FFT); e-prop and
DECOLLE need LIF's step dynamics and refuse it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from spikebench.checks import check_field_types
from spikebench.errors import ConfigError
from spikebench.neurons.base import NeuronDynamics, SpikingLayer
from spikebench.neurons.surrogate import spike, surrogate_names
from spikebench.sparse import sequence_linear

SPIKE_FNS = ("SB", "GS", "D", "T")
MEMBRANES = ("auto", "fft", "chunked")
CHUNKED_FROM = 512  # auto: the chunked scan from this T on (measured, module doc)
CHUNK = 16  # steps per chunk of the chunked scan


@dataclass(frozen=True)
class ParaLIFParams:
    alpha: float = 0.8  # initial synaptic decay
    beta: float = 0.9  # initial membrane decay
    threshold: float = 0.1
    spike_fn: str = "SB"
    learn_decays: bool = True
    surrogate: str = "fast_sigmoid"  # for "T" and "D"
    slope: float = 5.0
    temperature: float = 0.5  # for "GS"
    delta: float = 0.01  # for "D"
    membrane: str = "auto"  # how the membrane is computed: fft, chunked, auto (module doc)

    def __post_init__(self) -> None:
        check_field_types(self)  # NaN, infinity or a string: an error naming the field
        if self.spike_fn not in SPIKE_FNS:
            raise ConfigError(f"unknown spike_fn {self.spike_fn!r}; known: {', '.join(SPIKE_FNS)}")
        for name in ("alpha", "beta"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise ConfigError(f"{name} must lie in (0, 1), got {v}")
        if self.surrogate not in surrogate_names():
            raise ConfigError(f"unknown surrogate {self.surrogate!r}")
        if self.membrane not in MEMBRANES:
            raise ConfigError(f"unknown membrane {self.membrane!r}; known: "
                              f"{', '.join(MEMBRANES)}")


def paralif_kernel(alpha: torch.Tensor, beta: torch.Tensor, steps: int) -> torch.Tensor:
    """h [T, n]: the impulse response of the two filters for per-neuron alpha, beta [n].

    h[t] = (1 - beta) (beta^n - alpha^n) / (beta - alpha), n = t + 1, written stably as
    (1 - beta) hi^(n-1) expm1(-n d) / expm1(-d), hi = max(alpha, beta),
    d = |log beta - log alpha| (and (1 - beta) n hi^(n-1) when d = 0)."""
    n = torch.arange(1, steps + 1, dtype=alpha.dtype, device=alpha.device).unsqueeze(1)
    a, b = alpha.unsqueeze(0), beta.unsqueeze(0)
    hi = torch.maximum(a, b)
    d = (torch.log(b) - torch.log(a)).abs()
    same = d < 1e-12
    safe_d = torch.where(same, torch.ones_like(d), d)
    ratio = hi ** (n - 1) * torch.expm1(-n * safe_d) / torch.expm1(-safe_d)
    return (1 - b) * torch.where(same, n * hi ** (n - 1), ratio)


def parallel_membrane(current: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
                      method: str = "fft") -> torch.Tensor:
    """m [T, B, n] for input current [T, B, n], by ``method`` (fft, chunked, auto)."""
    if method == "auto":
        method = "chunked" if current.shape[0] >= CHUNKED_FROM else "fft"
    if method == "chunked":
        return chunked_membrane(current, alpha, beta)
    return fft_membrane(current, alpha, beta)


def fft_membrane(current: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor):
    """m [T, B, n] for input current [T, B, n]: causal convolution by FFT of length 2T.

    The FFTs run along the last, contiguous axis ([B, n, T]): on a CPU this halves the
    backward pass against FFTs along the strided time axis."""
    steps = current.shape[0]
    h = paralif_kernel(alpha.to(current.dtype), beta.to(current.dtype), steps)  # [T, n]
    n_fft = 2 * steps
    signal = current.permute(1, 2, 0).contiguous()  # [B, n, T]
    spec = torch.fft.rfft(signal, n=n_fft, dim=-1) * torch.fft.rfft(h.t(), n=n_fft, dim=-1)
    m = torch.fft.irfft(spec, n=n_fft, dim=-1)[..., :steps]
    return m.permute(2, 0, 1).contiguous()


def chunked_membrane(current: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
                     chunk: int = CHUNK) -> torch.Tensor:
    """m [T, B, n] by the chunked scan: with chunks c of K steps m = 0..K-1 and the state
    (I0, m0) the chunk starts from,

        m_c[m] = sum_(j <= m) h[m - j] X_c[j] + beta^(m+1) m0 + alpha h[m] I0,
        I_end  = alpha^K I0 + sum_j alpha^(K-1-j) X_c[j],   m_end = m_c[K-1]

    (the first term for all chunks at once, one batched product per neuron; the carry a
    scan over the T/K chunks)."""
    steps, batch, n = current.shape
    k = min(chunk, steps)
    chunks = -(-steps // k)
    x = current
    if chunks * k > steps:
        x = torch.cat([current, current.new_zeros(chunks * k - steps, batch, n)])
    a, b = alpha.to(current.dtype), beta.to(current.dtype)
    h = paralif_kernel(a, b, k)  # [K, n]
    idx = torch.arange(k, device=current.device)
    lag = idx.view(-1, 1) - idx.view(1, -1)  # m - j
    toeplitz = torch.where((lag >= 0).unsqueeze(-1), h[lag.clamp(min=0)], 0.0)  # [K, K, n]
    xs = x.view(chunks, k, batch, n)
    local = torch.einsum("mjn,cjbn->cmbn", toeplitz, xs)  # from zero state, every chunk
    if chunks > 1:
        ks = torch.arange(k, dtype=a.dtype, device=a.device).unsqueeze(1)
        i_local = torch.einsum("jn,cjbn->cbn", a ** (k - 1 - ks), xs)  # I at each chunk's end
        m_scale, i_scale = b ** (ks + 1), a * h  # [K, n]: the carried m0 and I0 in m_c[m]
        a_k = a ** k
        i0 = m0 = torch.zeros_like(i_local[0])
        starts_i, starts_m = [], []
        for i_c, m_c in zip(i_local.unbind(0), local[:, -1].unbind(0), strict=True):
            starts_i.append(i0)
            starts_m.append(m0)
            i0, m0 = a_k * i0 + i_c, m_scale[-1] * m0 + i_scale[-1] * i0 + m_c
        local = (local + m_scale.unsqueeze(1) * torch.stack(starts_m).unsqueeze(1)
                 + i_scale.unsqueeze(1) * torch.stack(starts_i).unsqueeze(1))
    return local.reshape(chunks * k, batch, n)[:steps]


def sequential_membrane(current: torch.Tensor, alpha, beta) -> torch.Tensor:
    """The same membrane by the step-by-step recurrence (reference and benchmarks)."""
    i = torch.zeros_like(current[0])
    m = torch.zeros_like(current[0])
    out = []
    for x_t in current:
        i = alpha * i + x_t
        m = beta * m + (1 - beta) * i
        out.append(m)
    return torch.stack(out)


class _BinaryST(torch.autograd.Function):
    """Binary sample of a probability p (Bernoulli, or p > 1/2); straight-through gradient."""

    generate_vmap_rule = True  # per-sample gradients (torch.func.vmap) for the analyses

    @staticmethod
    def forward(p, stochastic: bool):
        return torch.bernoulli(p) if stochastic else (p > 0.5).to(p.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def paralif_fire(m: torch.Tensor, p: ParaLIFParams, training: bool) -> torch.Tensor:
    """Spikes of the membranes m [T, ...] by ``p.spike_fn`` (SB and GS sample only in
    training)."""
    u = m - p.threshold
    if p.spike_fn == "T":
        return spike(u, p.surrogate, p.slope)
    if p.spike_fn == "SB":
        return _BinaryST.apply(torch.sigmoid(u), training)
    if p.spike_fn == "GS":
        noise = torch.rand_like(u).clamp(1e-6, 1 - 1e-6) if training else None
        logits = u + (torch.log(noise) - torch.log1p(-noise)) if noise is not None else u
        return _BinaryST.apply(torch.sigmoid(logits / p.temperature), False)
    norm = torch.sigmoid(u)  # "D"
    rise = norm - torch.cat([torch.zeros_like(norm[:1]), norm[:-1]])
    return spike(rise - p.delta, p.surrogate, p.slope)


def _decays(p: ParaLIFParams, n: int) -> nn.Parameter:
    """alpha and beta per neuron, through a sigmoid: raw [2, n]."""
    raw = torch.stack([torch.full((n,), _logit(p.alpha)), torch.full((n,), _logit(p.beta))])
    return nn.Parameter(raw, requires_grad=p.learn_decays)


class _Decays:
    """alpha and beta per neuron from the learnable ``raw_decays`` [2, n] (both forms)."""

    raw_decays: nn.Parameter

    @property
    def alpha(self) -> torch.Tensor:
        return torch.sigmoid(self.raw_decays[0])

    @property
    def beta(self) -> torch.Tensor:
        return torch.sigmoid(self.raw_decays[1])


class ParaLIFDynamics(_Decays, NeuronDynamics):
    """ParaLIF without weights: currents [T, B, n, ...] -> spikes, alpha and beta per neuron
    (channel) n, shared over the spatial axes; parallel in time."""

    stepwise = False
    description = ("ParaLIF (Yarga & Wood): no reset, the membrane of all T steps at once (FFT "
                   "convolution), SB/GS/D/T spike functions; parallel in time, BPTT only")

    def __init__(self, params: ParaLIFParams | None = None, n: int = 1) -> None:
        super().__init__(params or ParaLIFParams(), n)
        self.raw_decays = _decays(self.params, n)

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        moved = current.movedim(2, -1)  # [T, B, ..., n]: the membranes run over the last axis
        flat = moved.reshape(current.shape[0], -1, self.n)
        s = paralif_fire(parallel_membrane(flat, self.alpha, self.beta, self.params.membrane),
                         self.params, self.training)
        return s.reshape(moved.shape).movedim(-1, 2)


class ParaLIFLayer(_Decays, SpikingLayer):
    """A layer of ParaLIF neurons; ``forward`` maps x [T, B, n_in] to spikes [T, B, n_out]."""

    description = ParaLIFDynamics.description

    stepwise = False  # no step function: the whole sequence at once

    def __init__(self, n_in: int, n_out: int, recurrent: bool = False,
                 params: ParaLIFParams | None = None, weight_scale: float = 1.0,
                 rec_scale: float = 1.0) -> None:
        super().__init__()
        self.n_in, self.n_out, self.recurrent = n_in, n_out, recurrent
        self.params = params or ParaLIFParams()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        bound = weight_scale / math.sqrt(n_in)
        nn.init.uniform_(self.weight, -bound, bound)
        self.rec_weight = None
        if recurrent:
            self.rec_weight = nn.Parameter(torch.empty(n_out, n_out))
            nn.init.uniform_(self.rec_weight, -rec_scale / math.sqrt(n_out),
                             rec_scale / math.sqrt(n_out))
        self.raw_decays = _decays(self.params, n_out)

    def fire(self, m: torch.Tensor) -> torch.Tensor:
        return paralif_fire(m, self.params, self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        current = x @ self.weight.t()
        method = self.params.membrane
        s = self.fire(parallel_membrane(current, self.alpha, self.beta, method))
        if self.rec_weight is not None:
            shifted = torch.cat([torch.zeros_like(s[:1]), s[:-1]])
            current = current + shifted @ self.rec_weight.t()
            s = self.fire(parallel_membrane(current, self.alpha, self.beta, method))
        return s

    @torch.no_grad()
    def membranes(self, x: torch.Tensor) -> torch.Tensor:
        """The membranes of the feed-forward pass (no reset: m itself)."""
        return parallel_membrane(sequence_linear(x, self.weight), self.alpha, self.beta,
                                 self.params.membrane)

    def extra_repr(self) -> str:
        return f"{self.n_in}, {self.n_out}, recurrent={self.recurrent}, {self.params}"
