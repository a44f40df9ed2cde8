"""The compiled time loops (spikebench.native) against the Python loops they replace, which
stay as the reference: float64 to 1e-12, float32 bit for bit (FF and REC). Where they do
not apply (the smooth surrogate, other dtypes) the Python loop runs; with no compiler, or
SPIKEBENCH_NATIVE=0, too, with one note."""

import os
import subprocess
import sys

import pytest
import torch

from spikebench import native
from spikebench.neurons import LIFParams
from spikebench.neurons.lif_scan import lif_adjoint, lif_run
from spikebench.neurons.surrogate import surrogate_names

pytestmark = pytest.mark.skipif(native.library() is None,
                                reason="no C compiler: the compiled loops are not built")


def inputs(dtype, steps=30, batch=6, n=9, seed=0, scale=0.8):
    g = torch.Generator().manual_seed(seed)
    current = (torch.randn(steps, batch, n, generator=g, dtype=torch.float64) * scale + 0.3)
    rec = torch.randn(n, n, generator=g, dtype=torch.float64) * 0.5
    grad_s = torch.randn(steps, batch, n, generator=g, dtype=torch.float64)
    state = tuple(torch.randn(batch, n, generator=g, dtype=torch.float64) for _ in range(2))
    s0 = (torch.rand(batch, n, generator=g, dtype=torch.float64) < 0.4).double()
    return [t.to(dtype) for t in (current, rec, grad_s, *state, s0)]


def both(fn, *args, **kw):
    return fn(*args, compiled=True, **kw), fn(*args, compiled=False, **kw)


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("carried", [False, True])
def test_compiled_scan_equals_the_python_loop_float64(recurrent, reset, detach, carried):
    p = LIFParams(alpha=0.8, beta=0.85, threshold=0.7, gain=1.3, reset=reset,
                  detach_reset=detach, slope=3.0)
    current, rec, grad_s, i0, u0, s0 = inputs(torch.float64)
    rec = rec if recurrent else None
    state = (i0, u0, s0) if carried else None
    (u, s, last), (u_ref, s_ref, last_ref) = both(lif_run, current, p, rec, state)
    assert torch.equal(s, s_ref)
    assert 0 < float(s.mean()) < 1  # some spikes, not all
    torch.testing.assert_close(u, u_ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(last, last_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    g, g_ref = both(lif_adjoint, grad_s, u_ref, s_ref, p, rec)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("surrogate", [s for s in surrogate_names() if s != "soft_sigmoid"])
def test_compiled_backward_takes_every_surrogate(surrogate):
    p = LIFParams(alpha=0.9, beta=0.8, threshold=0.5, surrogate=surrogate, slope=2.0)
    current, rec, grad_s, *_ = inputs(torch.float64, seed=3)
    for r in (None, rec):
        u, s, _ = lif_run(current, p, r, compiled=False)
        g, g_ref = both(lif_adjoint, grad_s, u, s, p, r)
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("carried", [False, True])
def test_float32_gives_the_python_loops_bits(recurrent, reset, carried):
    """Written in the reference's order without fused multiply-adds, and a recurrent
    layer's V s[t-1] and gI[t+1] V formed by the reference's own torch products between
    the kernel's steps: the same float32 numbers, so training is unchanged."""
    p = LIFParams.from_time_constants(5e-3, 1e-2, 1e-3, threshold=0.1, reset=reset)
    current, rec, grad_s, i0, u0, s0 = inputs(torch.float32, steps=60, batch=16, n=40,
                                               scale=0.2)
    rec = rec * 0.2 if recurrent else None
    state = (i0 * 0.1, u0 * 0.1, s0) if carried else None
    (u, s, last), (u_ref, s_ref, last_ref) = both(lif_run, current, p, rec, state)
    assert 0 < float(s_ref.mean()) < 1
    assert torch.equal(u, u_ref) and torch.equal(s, s_ref)
    assert all(torch.equal(a, b) for a, b in zip(last, last_ref, strict=True))
    g, g_ref = both(lif_adjoint, grad_s, u_ref, s_ref, p, rec)
    assert torch.equal(g, g_ref)


def test_empty_batches_and_layers_keep_the_python_loop():
    p = LIFParams()
    for shape in [(4, 0, 5), (4, 3, 0)]:  # (T = 0 has no state to return, either way)
        current = torch.zeros(shape, dtype=torch.float64)
        (u, s, last), (u_ref, s_ref, last_ref) = both(lif_run, current, p)
        assert u.shape == u_ref.shape == shape and torch.equal(s, s_ref)


def test_silent_and_saturated_layers():
    p = LIFParams(alpha=0.8, beta=0.85, threshold=0.7)
    for level in (-50.0, 50.0):  # never / always above threshold
        current = torch.full((12, 3, 5), level, dtype=torch.float64)
        (u, s, _), (u_ref, s_ref, _) = both(lif_run, current, p)
        assert torch.equal(s, s_ref) and float(s.mean()) in (0.0, 1.0)
        torch.testing.assert_close(u, u_ref, rtol=1e-12, atol=1e-12)


def test_the_smooth_surrogate_and_other_dtypes_keep_the_python_loop(monkeypatch):
    calls = []
    monkeypatch.setattr(native, "lif_forward", lambda *a: calls.append(a))
    current, rec, *_ = inputs(torch.float64)
    lif_run(current, LIFParams(surrogate="soft_sigmoid"), rec)
    lif_run(current.half(), LIFParams())
    assert not calls
    lif_run(current, LIFParams(), rec)
    assert len(calls) == 1


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_without_a_compiler_the_python_loops_run_with_one_note(tmp_path):
    code = ("import torch; from spikebench.neurons.lif_scan import lif_run;"
            "from spikebench.neurons import LIFParams; from spikebench import native;"
            "x = torch.rand(5, 2, 3);"
            "[lif_run(x, LIFParams()) for _ in range(3)];"
            "print(native.library() is None)")
    out = run_python(code, SPIKEBENCH_NATIVE_DIR=str(tmp_path), CC=str(tmp_path / "no-cc"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
    notes = [line for line in out.stderr.splitlines() if "compiled time loops" in line]
    assert len(notes) == 1 and "Python loops" in notes[0]


def test_spikebench_native_0_chooses_the_python_loops():
    out = run_python("from spikebench import native; print(native.library() is None)",
                     SPIKEBENCH_NATIVE="0")
    assert out.stdout.strip() == "True" and not out.stderr


def test_the_build_is_named_by_its_source_and_rebuilt_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEBENCH_NATIVE_DIR", str(tmp_path))
    path = native.build()
    assert path.parent == tmp_path and path.exists()
    assert native.build() == path  # cached
    path.unlink()
    assert native.build().exists()


def test_a_surrogate_the_kernels_do_not_know_passes_its_derivatives(monkeypatch):
    """A user's surrogate (not in SURROGATE_KINDS): torch computes spike'(U - theta) and the
    kernel takes it."""
    monkeypatch.setattr(native, "SURROGATE_KINDS", {})
    p = LIFParams(alpha=0.9, beta=0.8, threshold=0.5, slope=2.0)
    current, rec, grad_s, *_ = inputs(torch.float64, seed=4)
    for r in (None, rec):
        u, s, _ = lif_run(current, p, r, compiled=False)
        g, g_ref = both(lif_adjoint, grad_s, u, s, p, r)
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="not compiled"):
        native.lif_backward(grad_s, u, s, None, p)


def test_a_bad_thread_count_is_a_config_error_naming_the_variable(monkeypatch):
    from spikebench.errors import ConfigError
    for bad in ("two", "0", "-1", ""):
        monkeypatch.setenv("SPIKEBENCH_NATIVE_THREADS", bad)
        with pytest.raises(ConfigError, match="SPIKEBENCH_NATIVE_THREADS"):
            native.threads()
    monkeypatch.setenv("SPIKEBENCH_NATIVE_THREADS", "2")
    assert native.threads() == 2
    current, _, grad_s, *_ = inputs(torch.float64)  # and two threads give the same numbers
    (u, s, _), (u_ref, s_ref, _) = both(lif_run, current, LIFParams())
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(u, u_ref, rtol=1e-12, atol=1e-12)
