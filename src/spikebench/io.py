"""Atomic file writes: a reader never sees a half-written file (used by every layer)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; honour the umask instead
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj) -> None:
    """``obj`` as indented JSON, written atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2)))


def digest(obj) -> str:
    """A short, stable hash of a JSON-able object (run ids, analysis cache keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


def subplots(nrows: int = 1, ncols: int = 1, figsize=None, **kw):
    """A matplotlib Figure and its axes without pyplot: no plotting backend is chosen or
    changed (importing spikebench leaves a notebook's backend alone)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kw)


def texts_outside(fig, tight: bool = True) -> list[str]:
    """The texts of ``fig`` (titles, labels, tick labels, legends) that would fall outside
    the saved image, whole or in part: the tight box of every artist if ``tight`` (what
    ``save_figure`` saves), else the figure's own canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    canvas = fig.canvas if hasattr(fig.canvas, "get_renderer") else FigureCanvasAgg(fig)
    fig.draw_without_rendering()  # the layout (constrained, tight) as it will be saved
    renderer = canvas.get_renderer()
    box = (fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans) if tight
           else fig.bbox)
    tol = 1.0  # pixels of rounding

    def outside(ext) -> bool:
        return (ext.x0 < box.x0 - tol or ext.y0 < box.y0 - tol or ext.x1 > box.x1 + tol
                or ext.y1 > box.y1 + tol)

    # tick labels: matplotlib keeps labels for ticks beyond the view that it never draws,
    # so they are judged by their axes' tight box (the drawn ones only)
    ticks = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
             for tick in axis.get_major_ticks() + axis.get_minor_ticks()
             for t in (tick.label1, tick.label2)}
    out = [f"tick labels of axes {k}" for k, ax in enumerate(fig.axes)
           if ax.get_visible() and outside(ax.get_tightbbox(renderer))]
    for text in fig.findobj(Text):
        if id(text) in ticks or not text.get_visible() or not text.get_text().strip():
            continue
        if outside(text.get_window_extent(renderer)):
            out.append(text.get_text())
    return out


def save_figure(fig, path: str | Path) -> None:
    """A matplotlib figure as a PNG (120 dpi), written atomically, cropped to its artists
    (``bbox_inches="tight"``: a legend beside the axes is kept whole). A text that would
    still be cut off is our bug: a RuntimeError naming it."""
    cut = texts_outside(fig)
    if cut:
        raise RuntimeError(f"{path}: text outside the saved image: {cut[:5]}")
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png",
                                               bbox_inches="tight"))


def cache_dir() -> Path:
    """Where generated data (the embedded default) is cached: ``$SPIKEBENCH_CACHE`` or
    ``~/.cache/spikebench``; a file in the way or a place that cannot be made is a
    ``ConfigError`` naming it."""
    from spikebench.errors import ConfigError

    env = os.environ.get("SPIKEBENCH_CACHE")
    path = Path(env) if env else Path.home() / ".cache" / "spikebench"
    where = "SPIKEBENCH_CACHE" if env else "the cache folder (HOME/.cache/spikebench)"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{where} {path}: a file is in the way; set SPIKEBENCH_CACHE to a "
                          "folder") from None
    except OSError as err:
        raise ConfigError(f"{where} {path}: cannot be made ({err.strerror or err}); set "
                          "SPIKEBENCH_CACHE to a folder you can write to") from None
    return path


# A file spikebench puts in every output folder it makes (a suite's --out, its runs
# folder): data fingerprints leave such folders out, so --out inside --data-dir does not
# change the data's identity at every rerun.
OUTPUT_MARKER = ".spikebench-output"


def mark_output(folder: Path) -> None:
    """Mark ``folder`` (made by the caller) as spikebench's own output."""
    marker = Path(folder) / OUTPUT_MARKER
    if not marker.exists():
        marker.write_text("written by spikebench: this folder holds its outputs, which data "
                          "fingerprints leave out\n")


def is_own_output(folder: str | Path) -> bool:
    return (Path(folder) / OUTPUT_MARKER).is_file()


def fingerprint_files(paths: Iterable[str | Path], root: str | Path | None = None) -> str:
    """A cheap fingerprint of files: their names (relative to ``root`` if given), sizes and
    modification times (ns). Any file added, removed, replaced or touched changes it."""
    rows = []
    for p in paths:
        st = os.stat(p)
        name = os.path.relpath(p, root) if root is not None else os.path.abspath(p)
        rows.append((name, st.st_size, st.st_mtime_ns))
    return digest(sorted(rows))


def writable_folder(path: Path, flag: str) -> None:
    """Check, before any work starts, that ``path`` is (or can become) a folder in which
    files can be written: a file in the way or a read-only place is a one-line error.
    Nothing is created here; the suite makes its folders once its runs are valid."""
    from spikebench.errors import RunFileError

    if path.exists() and not path.is_dir():
        raise RunFileError(f"{flag} {path} is a file, not a folder; choose another {flag}")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunFileError(f"{flag} {path}: {existing} is a file, not a folder; choose "
                           f"another {flag}")
    try:
        probe = existing / ".spikebench-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise RunFileError(f"{flag} {path}: cannot write there ({err.strerror or err}); "
                           f"choose a folder you can write to with {flag}") from None
