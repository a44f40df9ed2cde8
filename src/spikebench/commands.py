"""The commands besides ``run``: ``list``, ``data`` and ``export`` (``cli`` parses the
command line and dispatches here). Heavy imports (torch, the registries) happen inside
each command, so that ``spikebench list`` from its cache imports no torch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spikebench.errors import ConfigError


def list_text() -> str:
    """What ``spikebench list`` prints, from the live registries (imports torch)."""
    from spikebench.datasets import DATASETS
    from spikebench.learning_rules import RULES
    from spikebench.neurons import NEURONS
    from spikebench.suites import SUITES

    out = ["suites:"]
    out += [f"  {n:18s} {s.description}" for n, s in SUITES.items()]
    out += ["learning rules:"]
    out += [f"  {n:18s} {(cls.__doc__ or '').strip().splitlines()[0]}" for n, cls in RULES.items()]
    out += ["neurons:"]
    out += [f"  {n:18s} {entry.description}" for n, entry in NEURONS.items()]
    out += ["data sets:"]
    for n, info in DATASETS.items():
        where = "embedded" if info.embedded else f"--data-dir or {info.location()}"
        out.append(f"  {n:18s} {info.description} [{where}]")
    return "\n".join(out) + "\n"


def _list_key() -> str:
    """What the listing depends on: the package's source files (names, sizes, mtimes),
    the version and the environment that moves data folders."""
    import os

    import spikebench
    from spikebench.io import digest, fingerprint_files

    root = Path(spikebench.__file__).parent
    files = sorted(str(p) for p in root.rglob("*.py"))
    env = [os.environ.get(k) for k in ("SPIKEBENCH_DATA", "HOME")]
    return digest([spikebench.__version__, fingerprint_files(files, root), env])


def cmd_list() -> int:
    """The registries' names and descriptions. Importing them imports torch (seconds), so
    the text is cached under the cache folder, keyed by ``_list_key``: any change to the
    package's files rebuilds it; an unwritable cache only costs the time."""
    from spikebench.io import atomic_write, cache_dir

    text = None
    from spikebench.errors import SpikebenchError

    try:
        path = cache_dir() / f"list-{_list_key()}.txt"
        text = path.read_text() if path.is_file() else None
    except (OSError, SpikebenchError):  # no usable cache folder: only slower
        path = None
    if text is None:
        text = list_text()
        if path is not None:
            try:
                atomic_write(path, lambda tmp: Path(tmp).write_text(text))
            except OSError:
                pass  # a read-only cache: the listing is still right, only slower
    sys.stdout.write(text)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from spikebench.datasets import DATASETS, describe

    if args.action == "list":
        rows = [describe(n, args.data_dir if args.name in (None, n) else None)
                for n in DATASETS.names() if args.name in (None, n)]
        if not rows:
            DATASETS.get(args.name)
        for r in rows:
            state = "found" if r["found"] else "MISSING"
            size = f"{r['size_mb']:.0f} MB" if r["found"] and r["size_mb"] else ""
            sys.stdout.write(f"{r['name']:14s} {state:8s} {size:>8s}  {r['where']}\n"
                             f"{'':14s} {r['description']}\n")
            if not r["found"]:
                sys.stdout.write(f"{'':14s} how to obtain: {r['how']}\n")
        return 0
    if not args.name:
        raise ConfigError("`spikebench data show` needs a data set name")
    from spikebench.datasets.timit import PHONES61
    from spikebench.report.samples import show_samples

    info = DATASETS.get(args.name)
    data = info.load(args.split, args.data_dir, n_steps=args.steps)
    out = args.out or Path(f"spikebench-data-{args.name}.png")
    show_samples(data, out, phone_names=PHONES61 if args.name == "timit" else None)
    sys.stdout.write(f"{args.name} ({args.split}): {len(data)} samples, x {tuple(data.x.shape)}"
                     f" -> {out}\n")
    return 0


def _run_kind(run_dir: Path) -> str:
    """What trained the run in ``run_dir``, from its spec.json: the suite's kind and
    stage as a phrase ("a hybrid-lenet run (head stage)"), "" if it cannot tell."""
    import json

    try:
        spec = json.loads((run_dir / "spec.json").read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(spec, dict):
        return ""
    what = spec.get("suite") or spec.get("method") or "another suite's"
    stage = spec.get("stage")
    return f"a {what} run{f' ({stage} stage)' if stage else ''}"


def require_snn_run(run_dir: Path) -> None:
    """``run_dir`` holds a trained spiking MLP of the locality suites: no checkpoint, or
    the checkpoint of a hybrid or robust stage, is a ``ConfigError`` that says which."""
    from spikebench.engine.executor import load_state_file
    from spikebench.engine.train import SNN_CHECKPOINT_KEYS

    ck_path = run_dir / "checkpoint.pt"
    if not ck_path.is_file():
        raise ConfigError(f"{run_dir}: no checkpoint.pt; give a run folder "
                          "(spikebench-runs/runs/RUN_ID) of a trained SNN run")
    ck = load_state_file(ck_path)  # garbage: a RunFileError naming the file
    if isinstance(ck, dict) and "model" in ck and not set(SNN_CHECKPOINT_KEYS) <= set(ck):
        kind = _run_kind(run_dir) or "a run of another kind"
        raise ConfigError(f"{run_dir}: {kind}, not a spiking MLP of the locality suites; "
                          "only those (LIF, FF or REC) go over")


def cmd_export(args: argparse.Namespace) -> int:
    import os

    from spikebench.engine.train import load_trained
    from spikebench.nir_io import SNNTORCH_DT, write_nir

    require_snn_run(args.run_dir)
    dt = args.dt if args.dt is not None else (SNNTORCH_DT if args.target == "snntorch"
                                              else 1e-3)
    if not (dt > 0 and dt < float("inf")):
        raise ConfigError(f"--dt {dt}: must be a positive number of seconds (e.g. 1e-3)")
    out = args.out
    if out.is_dir():
        raise ConfigError(f"{out} is a folder; give the file to write (e.g. {out}/model.nir)")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"{out}: folder {parent} does not exist; make it or choose another "
                          "file")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ConfigError(f"{out}: cannot write there (permission denied); choose a file in a "
                          "folder you can write to")
    model, _, spec = load_trained(args.run_dir)
    write_nir(model, out, dt=dt, target=args.target)
    reset = {layer.params.reset for layer in model.hidden}
    note = (" (trained with the subtractive reset: NIR's CubaLIF resets to zero, so other "
            "simulators run it with their reset; spikebench.nir_io.read_nir restores it)"
            if "subtract" in reset else "")
    sys.stdout.write(f"{args.run_dir.name}: {spec.rule}/{spec.arch} {list(model.sizes)} -> "
                     f"{out} (NIR for {args.target}, dt={dt:g}){note}\n")
    return 0


def cmd_neurobench(args: argparse.Namespace) -> int:
    """NeuroBench's Benchmark on a trained run (``neurobench_adapter``), printed as JSON
    with our energy estimate beside it."""
    import json

    from spikebench.neurobench_adapter import run_neurobench

    require_snn_run(args.run_dir)
    if args.n is not None and args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    try:
        result = run_neurobench(args.run_dir, n=args.n)
    except ImportError as err:
        raise ConfigError(f"NeuroBench or snnTorch is not installed ({err.name}): make setup "
                          "installs both") from None
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0

