"""Compiled time loops: C kernels for the LIF scan (forward and backward, feed-forward and
recurrent, the surrogate derivative computed in the loop; kernels.c and lif.inc), built
with the system's C compiler and called through ctypes on CPU tensors (no torch headers:
the build takes about a second).

``make setup`` builds the library (``python -m spikebench.native``); otherwise the first
use does. Where no compiler is found or the build fails, one line on stderr says so and
every caller keeps its Python path, the reference the tests compare the kernels with
(``SPIKEBENCH_NATIVE=0`` chooses that path on purpose). The library lives in
``SPIKEBENCH_NATIVE_DIR`` (default ``~/.cache/spikebench``), named by a hash of the sources,
the flags and the CPU, so an edit rebuilds it and no checkout or machine loads a stale one.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from spikebench.errors import ConfigError

SOURCE = Path(__file__).with_name("kernels.c")
SOURCES = (SOURCE, SOURCE.with_name("lif.inc"), SOURCE.with_name("events.inc"))  # hashed
# -ffp-contract=off: no fused multiply-adds, so element-wise steps round as the reference's
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC",
         "-pthread", "-std=c11", "-lm"]
# surrogate.py's derivatives that kernels.c computes in its loop (same forms and order)
SURROGATE_KINDS = {"fast_sigmoid": 1, "sigmoid": 2, "triangle": 3, "straight_through": 4,
                   "exponential": 5, "pwl": 6, "rect": 7, "exp_damped": 8, "identity": 9}

_lib: ctypes.CDLL | None = None
_tried = False
_off = False  # python_loops()


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _cpu() -> bytes:
    """What -march=native compiles for: the CPU's model and flags (a cache shared between
    machines never hands one a library built for another)."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine().encode()
    keep = {line.split(":", 1)[0].strip(): line for line in info
            if line.startswith(("model name", "flags"))}
    return (platform.machine() + "".join(sorted(keep.values()))).encode()


def library_path() -> Path:
    text = (b"".join(path.read_bytes() for path in SOURCES) + " ".join(FLAGS).encode()
            + _cpu())
    key = hashlib.sha256(text).hexdigest()[:16]
    root = Path(os.environ.get("SPIKEBENCH_NATIVE_DIR") or Path.home() / ".cache" / "spikebench")
    return root / f"libspikebench-{key}.so"


def build(force: bool = False) -> Path:
    """Compile kernels.c (when missing or ``force``); the library's path. Raises
    RuntimeError with the compiler's message when it cannot."""
    target = library_path()
    if target.exists() and not force:
        return target
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or $CC) found")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([cc, *FLAGS, str(SOURCE), "-o", tmp], capture_output=True,
                              text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"{cc} failed: {last}")
        os.replace(tmp, target)  # atomic: concurrent builders never load half a file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, f64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
    for suffix in ("_f32", "_f64"):
        getattr(lib, "lif_forward" + suffix).argtypes = (
            [p] * 8 + [i64] * 3 + [f64] * 4 + [c_int, c_int])
        getattr(lib, "lif_forward_step" + suffix).argtypes = [p] * 5 + [i64] + [f64] * 3 + [c_int]
        getattr(lib, "lif_forward_step" + suffix).restype = None
        getattr(lib, "lif_backward_step" + suffix).argtypes = (
            [p] * 10 + [i64] + [f64] * 5 + [c_int] * 4)
        getattr(lib, "lif_backward_step" + suffix).restype = None
        getattr(lib, "lif_backward" + suffix).argtypes = (
            [p] * 5 + [i64] * 3 + [f64] * 5 + [c_int] * 4)
        getattr(lib, "lif_forward" + suffix).restype = None
        getattr(lib, "lif_backward" + suffix).restype = c_int
    lib.event_rows.argtypes = [p] * 5 + [i64] * 3 + [p] * 4
    lib.event_transpose.argtypes = [p] * 3 + [i64] * 2 + [p] * 4
    lib.event_rows.restype, lib.event_transpose.restype = c_int, None


@contextlib.contextmanager
def python_loops():
    """Within the block, every caller takes its Python loop (benchmarks: before / after)."""
    global _off
    before, _off = _off, True
    try:
        yield
    finally:
        _off = before


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None (disabled, or no build: said once on stderr)."""
    global _lib, _tried
    if _off or os.environ.get("SPIKEBENCH_NATIVE", "1") == "0":
        return None
    if not _tried:
        _tried = True
        try:
            lib = ctypes.CDLL(str(build()))
            _declare(lib)
            _lib = lib
        except (OSError, RuntimeError) as err:
            sys.stderr.write(f"note: compiled time loops unavailable ({err}); using the "
                             "Python loops\n")
    return _lib


def usable(*tensors: torch.Tensor | None) -> bool:
    """Whether the kernels take these tensors: CPU, float32 or float64, one dtype, no
    gradient recorded through them (callers pass data and saved tensors)."""
    present = [t for t in tensors if t is not None]
    dtype = present[0].dtype
    return (library() is not None and dtype in (torch.float32, torch.float64)
            and all(t.device.type == "cpu" and t.dtype == dtype for t in present))


def _ptr(t: torch.Tensor | None):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _fn(name: str, dtype: torch.dtype):
    return getattr(library(), name + ("_f64" if dtype == torch.float64 else "_f32"))


def threads() -> int:
    """Threads per kernel call: ``SPIKEBENCH_NATIVE_THREADS``, default 1. torch's OpenMP
    workers keep spinning between its operations on the same cores, so a kernel split over
    more threads competes with them: on 2 cores the BPTT step was slower with 2 (54 against
    43 ms, FF) than with 1."""
    value = os.environ.get("SPIKEBENCH_NATIVE_THREADS", "1")
    if not value.strip().isdigit() or int(value) < 1:
        raise ConfigError(f"SPIKEBENCH_NATIVE_THREADS={value!r}: give a whole number >= 1 "
                          "(threads per compiled-loop call; 1 is the default)")
    return int(value)


def lif_forward(current: torch.Tensor, p, rec_t: torch.Tensor | None, state):
    """lif_scan.lif_run's recurrence: (U [T, B, n], s [T, B, n], (I, U, s) after the last
    step), from ``state`` (None: zero); ``rec_t`` V^T of a recurrent layer, whose input
    I[t] = (cur[t] + s[t-1] V^T) + alpha I[t-1] is formed step by step with the reference's
    own torch operations between the kernel's steps."""
    current = current.contiguous()
    steps, batch, n = current.shape
    u_all, s_all = torch.empty_like(current), torch.empty_like(current)
    i0, u0, s0 = ((t.contiguous() for t in state) if state is not None else (None,) * 3)
    if rec_t is not None:
        return _forward_steps(current, p, rec_t, (i0, u0, s0), u_all, s_all)
    i_last, u_last = torch.empty_like(current[0]), torch.empty_like(current[0])
    _fn("lif_forward", current.dtype)(
        _ptr(current), _ptr(i0), _ptr(u0), _ptr(s0), _ptr(u_all), _ptr(s_all), _ptr(i_last),
        _ptr(u_last), steps, batch, n, p.alpha, p.beta, p.gain, p.threshold,
        int(p.reset == "subtract"), threads())
    return u_all, s_all, (i_last, u_last, s_all[-1])


def _forward_steps(current, p, rec_t, state, u_all, s_all):
    i0, u0, s_prev = state
    i = i0 if i0 is not None else torch.zeros_like(current[0])
    u = u0.clone() if u0 is not None else torch.zeros_like(current[0])
    step = _fn("lif_forward_step", current.dtype)
    m, subtract = current[0].numel(), int(p.reset == "subtract")
    for t in range(current.shape[0]):
        if s_prev is not None:
            i = torch.addmm(current[t], s_prev, rec_t).add_(i, alpha=p.alpha)
        else:
            i = p.alpha * i + current[t]
        step(_ptr(i), _ptr(s_prev), _ptr(u), _ptr(u_all[t]), _ptr(s_all[t]), m, p.beta,
             p.gain, p.threshold, subtract)
        s_prev = s_all[t]
    return u_all, s_all, (i, u, s_all[-1])


def lif_backward(grad_s: torch.Tensor, u_all: torch.Tensor, s_all: torch.Tensor,
                 deriv: torch.Tensor | None, p, rec: torch.Tensor | None = None) -> torch.Tensor:
    """dL/dcurrent [T, B, n] of the scan (lif_scan.lif_adjoint's loop); the surrogate's
    derivatives are computed in the loop where ``SURROGATE_KINDS`` has it (``deriv`` None),
    else passed. A recurrent layer (``rec`` V) runs step by step, adding gI[t+1] V by BLAS
    between the steps as the reference does."""
    kind = SURROGATE_KINDS.get(p.surrogate, 0) if deriv is None else 0
    if deriv is None and not kind:
        raise ValueError(f"surrogate {p.surrogate!r} is not compiled: pass its derivatives")
    # every argument bound to a name: a temporary's memory could be freed before the call
    grad_s, u_all, s_all = grad_s.contiguous(), u_all.contiguous(), s_all.contiguous()
    deriv = deriv.contiguous() if deriv is not None else None
    if rec is not None:
        return _backward_steps(grad_s, u_all, s_all, deriv, p, rec.contiguous(), kind)
    steps, batch, n = grad_s.shape
    out = torch.empty_like(grad_s)
    if _fn("lif_backward", grad_s.dtype)(
            _ptr(grad_s), _ptr(u_all), _ptr(s_all), _ptr(deriv), _ptr(out), steps, batch, n,
            p.alpha, p.beta, p.gain, p.threshold, p.slope, int(p.reset == "subtract"),
            int(bool(p.detach_reset)), kind, threads()):
        raise MemoryError(f"the LIF scan's backward could not allocate {4 * batch * n} numbers")
    return out


def _backward_steps(grad_s, u_all, s_all, deriv, p, rec, kind: int) -> torch.Tensor:
    """The recurrent layer's reverse scan: per step one addmm (gs = next + gI[t+1] V, the
    reference's own product) and one kernel call for the rest."""
    steps, batch, n = grad_s.shape
    out = torch.empty_like(grad_s)
    gu, gi = grad_s.new_zeros(batch, n), grad_s.new_zeros(batch, n)
    gs, nxt = grad_s.new_empty(batch, n), grad_s.new_empty(batch, n)
    step = _fn("lif_backward_step", grad_s.dtype)
    subtract, detach = int(p.reset == "subtract"), int(bool(p.detach_reset))
    ptrs = {name: [_ptr(t[k]) for k in range(steps)]
            for name, t in (("g", grad_s), ("u", u_all), ("s", s_all), ("c", out))}
    ptrs["d"] = [_ptr(deriv[k]) for k in range(steps)] if deriv is not None else [None] * steps
    for t in range(steps - 1, -1, -1):
        if t == steps - 1:
            current = grad_s[t]
        else:
            current = torch.addmm(nxt, gi, rec, out=gs)
        step(_ptr(current), ptrs["u"][t], ptrs["s"][t], ptrs["d"][t],
             ptrs["g"][t - 1] if t else None, ptrs["u"][t - 1] if t else None, _ptr(gu),
             _ptr(gi), ptrs["c"][t], _ptr(nxt), batch * n, p.alpha, p.beta, p.gain,
             p.threshold, p.slope, subtract, detach, kind, int(t == steps - 1))
    return out


def event_batch(offsets, t, f, v, index, steps: int, features: int):
    """SampleEvents.batch's arrays by counting (events.inc): (crow, col, val) of the
    time-major CSR [T B, F] and (crow_t, row_t, val_t) of its transpose, numpy arrays;
    None where an index, step or feature is out of range (the numpy path then says how)."""
    import numpy as np

    def arr(a, dtype):
        return np.ascontiguousarray(a, dtype=dtype)

    def ptr(a):
        return ctypes.c_void_p(a.ctypes.data)

    offsets, t, f = arr(offsets, np.int64), arr(t, np.int32), arr(f, np.int32)
    v, index = arr(v, np.float32), arr(index, np.int64)
    batch = len(index)
    if batch and (index.min() < 0 or index.max() >= len(offsets) - 1):
        return None
    rows = steps * batch
    nnz = int((offsets[index + 1] - offsets[index]).sum())
    crow, col = np.empty(rows + 1, np.int64), np.empty(nnz, np.int64)
    val = np.empty(nnz, np.float32)
    fill = np.empty(max(rows, features), np.int64)
    if library().event_rows(ptr(offsets), ptr(t), ptr(f), ptr(v), ptr(index), batch, steps,
                            features, ptr(crow), ptr(col), ptr(val), ptr(fill)):
        return None
    crow_t, row_t = np.empty(features + 1, np.int64), np.empty(nnz, np.int64)
    val_t = np.empty(nnz, np.float32)
    library().event_transpose(ptr(crow), ptr(col), ptr(val), rows, features, ptr(crow_t),
                              ptr(row_t), ptr(val_t), ptr(fill))
    return (crow, col, val), (crow_t, row_t, val_t)


def main() -> int:
    """``python -m spikebench.native``: build the library now (``make setup`` does)."""
    try:
        path = build(force="--force" in sys.argv)
    except (OSError, RuntimeError) as err:
        sys.stderr.write(f"note: compiled time loops unavailable ({err}); the Python loops "
                         "will be used\n")
        return 0
    sys.stdout.write(f"compiled time loops: {path}\n")
    return 0
