"""The ``spikebench`` command line.

    spikebench run [SUITE] [options]   train a suite's runs and write results + report
    spikebench list                    suites, learning rules, neurons and data sets
    spikebench data [show NAME]        data sets: where, found?, how to obtain; a picture
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from spikebench.commands import cmd_data, cmd_export, cmd_list, cmd_neurobench, list_text  # noqa: F401
from spikebench.errors import ConfigError

log = logging.getLogger("spikebench")

EPILOG = """\
examples:
  spikebench run                                  # default suite on the embedded data
  spikebench run locality-nmnist --data-dir ~/data/nmnist --epochs 20 --seeds 0 1 2
  spikebench run --rules bptt --archs rec --n-train 1000
  spikebench run locality-nmnist --neuron paralif --neuron-option spike_fn=GS
  spikebench run fgsm                             # Table III on the default suite's models
  spikebench run cka --seeds 0 1 2 --n-eval 1000
  spikebench run hybrid-resnet --encoders resnet18 --weights resnet18-imagenet.pt
  spikebench run cka --executor ray               # runs in parallel on a local Ray cluster
  spikebench run cka --executor ray --address HEAD:6379 --runs /shared/runs
  spikebench list

Rerunning the same command skips finished runs and resumes interrupted ones.
"""


def _device(name: str | None) -> str | None:
    """--device as a spec's device: auto resolved here, CUDA checked before any run."""
    if name is None:
        return None
    from spikebench.engine.train import resolve_device

    device = resolve_device(name)
    return "cuda" if device.type == "cuda" else "cpu"


def _positive(value: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not >= 1")
    return n


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _option(value: str) -> tuple[str, object]:
    """KEY=VALUE; VALUE is read as JSON (numbers, true/false) or else kept as a string."""
    key, sep, raw = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spikebench",
        description="Benchmark spiking-network learning rules of varying locality "
        "(BPTT, e-prop, DECOLLE) on one common harness.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="train a suite and write results.csv and report.md",
        description="Train every run of SUITE (skipping finished ones, resuming interrupted "
        "ones) and write OUT/results.csv (tidy: one row per run, epoch and metric), "
        "OUT/report.md and its PNG plots.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    run.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                     help="log every epoch")
    run.add_argument("suite", nargs="?", default="default",
                     help="suite name (default: %(default)s; see `spikebench list`)")
    run.add_argument("--out", type=Path, default=None,
                     help="output folder for results.csv, report.md, PNGs and the studies' "
                     "tables (default: ./spikebench-runs/SUITE)")
    run.add_argument("--runs", type=Path, default=None,
                     help="folder of trained runs, one subfolder per spec id; suites that "
                     "share it train each spec once (e.g. `fgsm` reuses the default suite's "
                     "models). Default: ./spikebench-runs/runs, or OUT/runs with --out")
    run.add_argument("--data-dir", default=None,
                     help="folder of a real data set (e.g. N-MNIST); without it, suites use "
                     "the embedded data")
    run.add_argument("--dataset", default=None, help="override the suite's data set by name")
    run.add_argument("--epochs", type=int, default=None, help="training epochs per run")
    run.add_argument("--seeds", type=int, nargs="+", default=None,
                     help="seeds; several give mean ± std in the report (default: the "
                     "suite's, mostly 0; cka: 0 1)")
    run.add_argument("--n-train", type=int, default=None,
                     help="use a fixed random subset of N training samples")
    run.add_argument("--n-test", type=int, default=None, help="subset of N test samples")
    run.add_argument("--batch-size", type=int, default=None, help="mini-batch size")
    run.add_argument("--lr", type=float, default=None,
                     help="learning rate (Adam for the SNN suites, SGD for the hybrids)")
    run.add_argument("--steps", type=int, default=None, dest="n_steps",
                     help="time steps T per sample (event bins of 10 ms by default)")
    run.add_argument("--rate-steps", type=int, default=None,
                     help="compress-robust: T of the rate-coded baseline (default 100)")
    run.add_argument("--rules", type=_csv, default=None,
                     help="comma-separated learning rules (default: the suite's)")
    run.add_argument("--archs", type=_csv, default=None,
                     help="comma-separated architectures: ff, rec (SNN suites; default: both); "
                     "robust and compress-robust: one conv net, vgg-small (default), the "
                     "references' vgg5-ref and vgg11-ref (--paper's default), torchvision's "
                     "vgg5, vgg11, vgg16, resnet12")
    run.add_argument("--rule-option", type=_option, action="append", default=[],
                     metavar="KEY=VALUE",
                     help="an option of the rules that take it, e.g. feedback=random (e-prop), "
                     "online=true or readout_scale=2 (DECOLLE); repeatable")
    run.add_argument("--neuron", default=None,
                     help="a registered neuron: lif, paralif, dlif (spikebench list says "
                     "what each is): the SNN suites' hidden "
                     "layers' (lif by default) or the hybrid suites' spiking head (instead of "
                     "their LIF and ParaLIF heads); the robust suites refuse it (their methods "
                     "fix their neurons); only BPTT trains ParaLIF (e-prop's and DECOLLE's "
                     "traces are derived for LIF), the other rules are left out and named in "
                     "the report")
    run.add_argument("--neuron-option", type=_option, action="append", default=[],
                     metavar="KEY=VALUE",
                     help="a neuron parameter, e.g. spike_fn=GS (ParaLIF: SB, GS, D, T), "
                     "reset=zero (LIF); repeatable")
    run.add_argument("--paper", action="store_true",
                     help="the paper's settings where a suite scales them down for this "
                     "machine (cka: 10 seeds, 4096 samples; backdoor: 5 pairs, full training, "
                     "a 1-pixel trigger at every 4th step; fgsm: every test sample, normalised "
                     "event counts; the last two are the settings closest to the paper's "
                     "numbers in the fidelity audit, `spikebench run fidelity`)")
    run.add_argument("--encoders", type=_csv, default=None,
                     help="hybrid suites: comma-separated image encoders (resnet18, resnet50, "
                     "vit_b_16, vit_small, lenet5; default: the suite's)")
    run.add_argument("--weights", default=None, metavar="FILE",
                     help="hybrid suites: the encoder's weights, a state_dict saved from "
                     "torchvision (e.g. ImageNet weights exported on another machine); "
                     "without it, random initialisation")
    run.add_argument("--studies", type=_csv, default=None,
                     help="comma-separated studies to run on the trained models besides the "
                     "suite's own (e.g. fisher on a conv suite: `spikebench run robust "
                     "--studies fisher`); fisher takes every suite's models, cka, fgsm, "
                     "backdoor and fidelity the spiking-MLP suites'")
    run.add_argument("--n-eval", type=int, default=None,
                     help="test samples that the studies analyse (fgsm, cka, fisher) or that "
                     "FGSM attacks in the hybrid suites")
    run.add_argument("--log", choices=["tensorboard", "mlflow"], default=None,
                     help="also log each run (per-epoch metrics, the spec as parameters) and "
                     "the suite's plots to a local TensorBoard folder or MLflow file store "
                     "(no server; pip install 'spikebench[tracking]')")
    run.add_argument("--log-dir", type=Path, default=None,
                     help="where --log writes (default: OUT/tensorboard or OUT/mlruns)")
    run.add_argument("--executor", choices=["in-process", "ray"], default="in-process",
                     help="where runs and per-model analyses run: one after the other in "
                     "this process (default), or as Ray tasks (`pip install "
                     "'spikebench[ray]'`): without --address on a local Ray cluster of all "
                     "this machine's cores, started and stopped by this command, on 127.0.0.1 "
                     "only. Results are the same bit for bit with the same --cpus-per-run")
    run.add_argument("--address", default=None, metavar="HOST:PORT",
                     help="with --executor ray: join this running Ray cluster (`ray start "
                     "--head` prints it); --runs must then be a folder every machine sees at "
                     "the same path (checked before any run starts)")
    run.add_argument("--cpus-per-run", type=int, default=None, metavar="N",
                     help="torch threads (and, on Ray, CPUs reserved) per run (default: 1 "
                     "on Ray, all cores in-process)")
    run.add_argument("--gpus-per-run", type=float, default=None, metavar="G",
                     help="with --executor ray: GPUs reserved per run (train on them with "
                     "--device cuda)")
    run.add_argument("--device", choices=["cpu", "cuda", "auto"], default=None,
                     help="where every suite trains, and where the conv and hybrid suites "
                     "attack (default cpu; auto: CUDA where torch sees a GPU). A run's id "
                     "covers its device (float outcomes differ), so CPU runs are not reused "
                     "for CUDA ones; the MLP studies analyse on the CPU")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--config", type=Path, default=None, metavar="FILE.toml",
                     help="an experiment file: the same fields as these flags (long names, "
                     "e.g. data-dir = \"...\", seeds = [0, 1], [rule-option] tables); flags "
                     "given here override it (see docs/concepts.md)")
    run.add_argument("--print-config", action="store_true",
                     help="print the resolved configuration (file and flags) as TOML and "
                     "exit without running; every report states it too")

    sub.add_parser("list", help="list suites, learning rules, neurons and data sets")

    data = sub.add_parser(
        "data",
        help="where each data set is looked for, whether it is there, and how to obtain it",
        description="Without arguments: every data set, where it is looked for (--data-dir, "
        "else $SPIKEBENCH_DATA/<name>, default ~/spikebench-data/<name>), whether it is "
        "found, its size on disk and how to obtain it. `data show NAME` writes a PNG of a few "
        "samples: what the network sees.",
    )
    data.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    data.add_argument("name", nargs="?", help="data set (for `show`)")
    data.add_argument("--data-dir", default=None, help="folder of the data set")
    data.add_argument("--split", default="train", choices=["train", "test"])
    data.add_argument("--steps", type=_positive, default=30,
                      help="time steps (events, images; >= 1)")
    data.add_argument("--out", type=Path, default=None,
                      help="PNG to write (default: ./spikebench-data-NAME.png)")

    export = sub.add_parser(
        "export",
        help="write a trained run's network in another format (NIR)",
        description="Write the trained SpikingMLP of RUN_DIR (LIF, FF or REC) as a NIR graph: "
        "Linear -> CubaLIF per hidden layer (a Linear V back into it for REC: a graph "
        "cycle), Affine -> LI for the readout, our discrete constants mapped to NIR's "
        "continuous ones for forward-Euler steps of --dt (spikebench.nir_io explains the "
        "mapping). NIR's CubaLIF resets to zero; a network trained with the subtractive "
        "reset is written with the same nodes and says so in the graph's metadata. "
        "ParaLIF and hybrid runs cannot be represented and are refused.")
    export.add_argument("run_dir", type=Path, help="a run folder (spikebench-runs/runs/RUN_ID)")
    export.add_argument("out", type=Path, help="the file to write (e.g. model.nir)")
    export.add_argument("--format", choices=["nir"], default="nir", help="output format")
    export.add_argument("--target", choices=["nir", "snntorch"], default="nir",
                        help="nir: the graph as our model is (norse and spikebench read "
                        "it); snntorch: the nodes snnTorch 1.0's import_from_nir maps "
                        "(its dt of 1e-4, the readout as an Affine only)")
    export.add_argument("--dt", type=float, default=None,
                        help="the simulation step in seconds the constants are mapped for "
                        "(default 1e-3; 1e-4 with --target snntorch)")
    bench = sub.add_parser(
        "neurobench", help="run NeuroBench's Benchmark on a trained run (its own metrics)",
        description="Hand a trained LIF run (FF or REC with the subtractive reset, FF with "
        "the zero reset) to NeuroBench: its "
        "Benchmark with its own metric code (footprint, connection sparsity, accuracy, "
        "activation sparsity, SynOps, membrane updates, neuron operations) on the run's test "
        "data, printed as JSON, with spikebench's energy estimate per sample beside it "
        "(Horowitz 2014, 45 nm: 0.9 pJ per AC and neuron operation, 4.6 pJ per MAC; "
        "spikebench.metrics.efficiency.energy_joules takes other figures).")
    bench.add_argument("run_dir", type=Path, help="a run folder (spikebench-runs/runs/RUN_ID)")
    bench.add_argument("--n", type=int, default=None, help="the first N test samples only")
    compare = sub.add_parser(
        "compare", help="one table and plot of a metric across any suites' results.csv",
        description="Concatenate results.csv files (every suite's start with the same "
        "columns) and compare one metric at each run's last epoch, per suite, data set, model, "
        "neuron, method and stage: OUT/compare.md and OUT/compare.png.")
    compare.add_argument("results", nargs="+", type=Path, help="results.csv files")
    compare.add_argument("--metric", default="test_acc", help="metric (default test_acc)")
    compare.add_argument("--out", type=Path, default=Path("spikebench-compare"),
                         help="output folder (default ./spikebench-compare)")
    return p


def run_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def cmd_run(args: argparse.Namespace, parser: argparse.ArgumentParser,
            argv: list[str] | None) -> int:
    import inspect

    from spikebench.config import load_config, resolved_toml

    if args.config is not None:  # the file's fields become defaults; flags override them
        run_parser(parser).set_defaults(**load_config(args.config, run_parser(parser)))
        args = parser.parse_args(argv)
    config = resolved_toml(args, run_parser(parser))

    from spikebench.learning_rules import RULES
    from spikebench.models.hybrid import IMAGE_ENCODERS
    from spikebench.suites.base import SUITES, SuiteOptions, run_suite

    SUITES.get(args.suite)  # an unknown suite fails before any folder is made
    for r in args.rules or []:
        RULES.get(r)
    for e in args.encoders or []:
        IMAGE_ENCODERS.get(e)
    for key, _ in args.rule_option:
        takers = [n for n, cls in RULES.items() if key in inspect.signature(cls).parameters]
        if not takers:
            raise ConfigError(f"no learning rule takes the option {key!r}")
    opts = SuiteOptions(
        data_dir=args.data_dir,
        dataset=args.dataset,
        epochs=args.epochs,
        seeds=args.seeds,
        n_train=args.n_train,
        n_test=args.n_test,
        batch_size=args.batch_size,
        lr=args.lr,
        n_steps=args.n_steps,
        rate_steps=args.rate_steps,
        rules=args.rules,
        archs=args.archs,
        rule_options=dict(args.rule_option),
        neuron=args.neuron,
        neuron_options=dict(args.neuron_option),
        paper=args.paper,
        n_eval=args.n_eval,
        studies=args.studies,
        device=_device(args.device),
        encoders=args.encoders,
        weights=args.weights,
        progress=not args.no_progress,
    )
    out = args.out or Path("spikebench-runs") / args.suite
    runs = args.runs or (out / "runs" if args.out else Path("spikebench-runs") / "runs")
    SUITES.get(args.suite).check_options(opts)  # before any folder is made
    if args.print_config:
        sys.stdout.write(config)
        return 0
    from spikebench.io import writable_folder

    for flag, folder in (("--out", out), ("--runs", runs)):
        writable_folder(folder, flag)
    from spikebench.engine.ray_executor import make_executor

    tracker = None
    if args.log is not None:
        from spikebench.tracking import Tracker

        log_dir = args.log_dir or out / ("tensorboard" if args.log == "tensorboard"
                                         else "mlruns")
        writable_folder(log_dir, "--log-dir")
        tracker = Tracker(args.log, log_dir, args.suite)
    elif args.log_dir is not None:
        raise ConfigError("--log-dir is an option of --log; add --log tensorboard|mlflow or "
                          "drop it")
    executor = make_executor(args.executor, args.address, args.cpus_per_run,
                             args.gpus_per_run, opts.progress)
    t0 = time.perf_counter()
    try:
        result = run_suite(args.suite, out, opts, runs_dir=runs, executor=executor,
                           config=config, tracker=tracker)
    finally:
        executor.close()
    elapsed = time.perf_counter() - t0
    sys.stdout.write(f"report: {result.report}\nresults: {out / 'results.csv'}\n")
    sys.stdout.write(f"{len(result.runs)} runs in {elapsed:.0f} s\n")
    if tracker is not None:
        sys.stdout.write(tracker.summary() + "\n")
    for r in result.failed:
        sys.stderr.write(f"spikebench: run {r.spec.run_id} {r.status}: {r.message}\n")
    return 1 if result.failed else 0


class Terminated(BaseException):
    """SIGTERM arrived (a scheduler ending the job, ``kill``): unwinds like Ctrl-C."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


# errors of the machine, not of spikebench: one line (what, where, what to do), exit 2
_WRITE_FIX = ("free space or choose a folder you can write to (--out), then rerun: finished "
              "runs and epochs are kept")
DISK_ERRORS = {errno.ENOSPC: ("the disk is full", _WRITE_FIX),
               errno.EDQUOT: ("the disk quota is used up", _WRITE_FIX),
               errno.EROFS: ("the file system is read-only", _WRITE_FIX),
               errno.EACCES: ("permission denied", "fix its permissions or choose another "
                              "path, then rerun: finished runs and epochs are kept")}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from spikebench.progress import setup_logging

    setup_logging(args.verbose, not getattr(args, "no_progress", False))
    if args.command is None:
        parser.print_help()
        return 2
    from spikebench.errors import SpikebenchError

    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(args, parser, argv)
    except SpikebenchError as err:  # bad input: one line; anything else is our bug
        message = " ".join(str(err).split())
        sys.stderr.write(f"spikebench: error: {message}\n")
        return 2
    except OSError as err:
        if err.errno not in DISK_ERRORS:
            raise
        where = f"{err.filename}: " if err.filename else ""
        what, fix = DISK_ERRORS[err.errno]
        sys.stderr.write(f"spikebench: error: {where}{what}; {fix}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("spikebench: interrupted; rerun the same command to resume\n")
        return 130
    except Terminated:
        sys.stderr.write("spikebench: terminated (SIGTERM); rerun the same command to "
                         "resume\n")
        return 143
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


def _main(args: argparse.Namespace, parser: argparse.ArgumentParser,
          argv: list[str] | None) -> int:
    if args.command == "list":
        return cmd_list()
    if args.command == "data":
        return cmd_data(args)
    if args.command == "export":
        return cmd_export(args)
    if args.command == "neurobench":
        return cmd_neurobench(args)
    if args.command == "compare":
        from spikebench.report.compare import write_comparison

        sys.stdout.write(f"{write_comparison(args.results, args.out, args.metric)}\n")
        return 0
    return cmd_run(args, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
