"""Suites: a named list of experiment specs plus the report they produce.

``run_suite`` returns the tidy results table (pandas) and writes ``results.csv`` (after
every run, atomically) and ``report.md`` + PNGs into the output folder. Rerunning a suite
skips finished runs and resumes interrupted ones from their last epoch.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from spikebench.analysis.backdoor import POISON_RATES, random_pairs
from spikebench.datasets import DATASETS
from spikebench.errors import ConfigError
from spikebench.harness import compress, hybrid, robust
from spikebench.harness.data import spec_data
from spikebench.harness.executor import InProcessExecutor, RunResult
from spikebench.harness.reference import PAPER_FGSM_FIELDS, PAPER_TRIGGER
from spikebench.harness.report import write_report
from spikebench.harness.results import (
    SuiteResult,
    tidy_rows,
    timings_frame,
    to_frame,
    write_atomic,
)
from spikebench.harness.spec import (
    ARCHS,
    ExperimentSpec,
    check_field_types,
    with_data_identity,
)
from spikebench.harness.studies import STUDIES, StudyContext
from spikebench.harness.train import train_run
from spikebench.learning_rules import RULES
from spikebench.models import CONV_ARCHS
from spikebench.progress import progress_line
from spikebench.registry import Registry

log = logging.getLogger(__name__)

LOCALITY_RULES = ("bptt", "eprop", "decolle")


@dataclass
class SuiteOptions:
    """What the command line may change in a suite's specs (None = the suite's default)."""

    data_dir: str | None = None
    dataset: str | None = None
    epochs: int | None = None
    seeds: list[int] | None = None  # None: the suite's default (most suites: [0])
    n_train: int | None = None
    n_test: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    n_steps: int | None = None
    rules: list[str] | None = None
    archs: list[str] | None = None
    rule_options: dict | None = None
    neuron: str | None = None  # e.g. "paralif" (None: the suite's, LIF)
    neuron_options: dict | None = None  # e.g. {"spike_fn": "GS"}
    paper: bool = False  # the paper's settings (seeds, samples, pairs) where they differ
    encoders: list[str] | None = None  # hybrid suites: image encoders (None: the suite's)
    weights: str | None = None  # hybrid suites: a torchvision-format encoder state_dict
    n_eval: int | None = None  # test samples the studies analyse (None: study default)
    device: str | None = None  # "cpu", "cuda[:N]" (the CLI resolves "auto"); None: cpu
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.data_dir, Path):
            self.data_dir = str(self.data_dir)
        check_field_types(self, OPTION_FLAGS)  # a string for a list is refused here
        for name in ("seeds", "rules", "archs", "encoders"):
            values = getattr(self, name)
            if values is None:
                continue
            if not values:
                raise ConfigError(f"{name} is empty; give at least one (or None: the suite's)")
            dupes = sorted({v for v in values if list(values).count(v) > 1}, key=str)
            if dupes:
                raise ConfigError(f"{name} lists {', '.join(map(str, dupes))} more than once; "
                                  "each would give duplicate rows")
            kind = int if name == "seeds" else str
            bad = [v for v in values if not isinstance(v, kind) or isinstance(v, bool)]
            if bad:
                raise ConfigError(f"{name} must hold {kind.__name__}s, got {bad!r}")
        for r in self.rules or []:
            RULES.get(r)  # an unknown name is an error listing the known rules
        for a in self.archs or []:
            if a not in ARCHS and a not in CONV_ARCHS:
                raise ConfigError(f"unknown arch {a!r}; known archs: {', '.join(ARCHS)} (SNN "
                                  f"suites), {', '.join(CONV_ARCHS)} (robust suites)")
        for name in ("epochs", "n_train", "n_test", "batch_size", "n_steps", "n_eval"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")

    def apply(self, spec: ExperimentSpec) -> ExperimentSpec:
        changes = {k: getattr(self, k) for k in
                   ("epochs", "n_train", "n_test", "batch_size", "lr", "n_steps")
                   if getattr(self, k) is not None}
        if self.data_dir is not None:
            changes["data_dir"] = str(self.data_dir)
        if self.neuron is not None:
            changes["neuron"] = self.neuron
        if self.device is not None:
            changes["device"] = self.device
        if self.neuron_options:
            changes["neuron_options"] = dict(self.neuron_options)
        if self.rule_options:  # options a rule does not take are left out for that rule
            accepted = inspect.signature(RULES.get(spec.rule)).parameters
            changes["rule_options"] = {k: v for k, v in self.rule_options.items()
                                       if k in accepted}
        return replace(spec, **changes)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    build: Callable[[SuiteOptions], tuple[list[ExperimentSpec], list[str]]]
    studies: tuple[str, ...] = ()  # analyses run on the trained models (harness.studies)
    # suites with their own kind of runs (the hybrids): (suite, out_dir, opts, runs_dir,
    # executor)
    runner: Callable | None = None
    options: frozenset[str] | None = None  # SuiteOptions it uses (None: the SNN suites')

    def accepted(self) -> frozenset[str]:
        if self.options is not None:
            return self.options
        return SNN_OPTIONS | ({"n_eval"} if self.studies else frozenset())

    def check_options(self, opts: SuiteOptions) -> None:
        """An option this suite does not use is an error that says so (never ignored)."""
        unused = [f for f in OPTION_FLAGS if f not in self.accepted()
                  and getattr(opts, f) not in (None, False, [], {}, ())]
        if unused:
            flags = ", ".join(OPTION_FLAGS[f] for f in unused)
            users = sorted(n for n, s in SUITES.items() if all(f in s.accepted()
                                                               for f in unused))
            raise ConfigError(
                f"suite {self.name!r} does not use {flags}; drop it"
                + (f" (suites that use it: {', '.join(users)})" if users else ""))


OPTION_FLAGS = {"data_dir": "--data-dir", "dataset": "--dataset", "epochs": "--epochs",
                "seeds": "--seeds", "n_train": "--n-train", "n_test": "--n-test",
                "batch_size": "--batch-size", "lr": "--lr", "n_steps": "--steps",
                "rules": "--rules", "archs": "--archs", "rule_options": "--rule-option",
                "neuron": "--neuron", "neuron_options": "--neuron-option", "paper": "--paper",
                "encoders": "--encoders", "weights": "--weights", "n_eval": "--n-eval",
                "device": "--device"}
COMMON_OPTIONS = frozenset({"data_dir", "dataset", "epochs", "seeds", "n_train", "n_test",
                            "batch_size", "lr", "paper"})
SNN_OPTIONS = COMMON_OPTIONS | {"n_steps", "rules", "archs", "rule_options", "neuron",
                                "neuron_options", "device"}
HYBRID_OPTIONS = COMMON_OPTIONS | {"encoders", "weights", "n_eval"}
ROBUST_OPTIONS = COMMON_OPTIONS | {"n_steps", "n_eval", "archs"}


def locality_grid(name: str, embedded: str | None, real: str, rules=LOCALITY_RULES,
                  seeds=(0,), paper_seeds=None, variants=None, paper_defaults=None,
                  **defaults):
    """3 rules x FF/REC x seeds on ``embedded`` data, or ``real`` data with --data-dir (or
    always, where there is no embedded data); ``defaults`` are spec fields of this suite
    (the command line overrides them). ``variants(opts)`` optionally multiplies every run
    into several (e.g. poisoned copies), as a list of extra spec fields."""

    def build(opts: SuiteOptions) -> tuple[list[ExperimentSpec], list[str]]:
        dataset = opts.dataset or (real if opts.data_dir or embedded is None else embedded)
        wanted = opts.rules or list(rules)
        notes = []
        if opts.neuron is not None:
            unable = [r for r in wanted if r in RULES and RULES.get(r).neurons is not None
                      and opts.neuron not in RULES.get(r).neurons]
            if unable:
                notes.append(f"{', '.join(unable)} cannot train {opts.neuron} neurons (their "
                             "eligibility traces / local errors are derived for LIF's step "
                             "dynamics), not run")
                wanted = [r for r in wanted if r not in unable]
        archs = opts.archs or list(ARCHS)
        chosen = opts.seeds or list(paper_seeds if opts.paper and paper_seeds else seeds)
        extra = variants(opts) if variants else [{}]
        fields_ = {**defaults, **(paper_defaults or {} if opts.paper else {})}
        specs = [
            opts.apply(ExperimentSpec(dataset=dataset, rule=r, arch=a, seed=s, suite=name,
                                      **{**fields_, **v}))
            for r in wanted if r in RULES
            for a in archs
            for v in extra
            for s in chosen
        ]
        return specs, notes

    return build


def backdoor_variants(opts: SuiteOptions) -> list[dict]:
    """Poisoned copies of every run: each (source, target) pair x poison rate; scaled down
    to one pair by default, the paper's five pairs with --paper."""
    pairs = random_pairs(5 if opts.paper else 1, 10, seed=0)
    trigger = PAPER_TRIGGER if opts.paper else {}  # the fidelity audit's closest trigger
    return [{"backdoor": {"source": s, "target": t, "rate": r, **trigger}}
            for s, t in pairs for r in POISON_RATES]


SUITES: Registry[Suite] = Registry("suite")
SUITES.register(
    "default",
    Suite(
        "default",
        "FF and REC LIF networks (2312-120-84-10) trained by BPTT, e-prop and DECOLLE on "
        "the embedded N-MNIST-style data (nmnist-sim), 5 epochs: the quick look.",
        locality_grid("default", "nmnist-sim", "nmnist", epochs=5),
    ),
)
SUITES.register(
    "locality-nmnist",
    Suite(
        "locality-nmnist",
        "The locality paper's N-MNIST study (Table II): BPTT, e-prop, DECOLLE x FF/REC, "
        "2312-120-84-10 LIF networks, 10 epochs; embedded data by default, real N-MNIST "
        "with --data-dir.",
        locality_grid("locality-nmnist", "nmnist-sim", "nmnist"),
    ),
)


SUITES.register(
    "locality-timit",
    Suite(
        "locality-timit",
        "The locality paper's TIMIT study (Table II): BPTT, e-prop, DECOLLE x FF/REC, "
        "39-400-61 LIF networks, frame-wise phone classification; needs --data-dir (TIMIT is "
        "licensed by the LDC).",
        locality_grid("locality-timit", None, "timit", epochs=10, batch_size=32),
    ),
)
SUITES.register(
    "locality-fsdd",
    Suite(
        "locality-fsdd",
        "Spoken digits (FSDD): BPTT, e-prop, DECOLLE x FF/REC, 39-200-10 LIF networks on MFCC "
        "sequences; does recurrence help on speech? Needs --data-dir (e.g. ../shared/data/fsdd).",
        locality_grid("locality-fsdd", None, "fsdd", epochs=10),
    ),
)


# The analysis suites train the default suite's runs (same specs, so a shared runs folder
# trains them once) and then analyse them; see harness.studies.
ANALYSED = ("BPTT, e-prop, DECOLLE x FF/REC LIF networks (2312-120-84-10), 5 epochs, on the "
            "embedded data (real N-MNIST with --data-dir)")
for _name, _studies, _what, _extra in (
    ("fgsm", ("fgsm",), "Table III: accuracy under FGSM (on the ANN counterpart and white-box) "
     "at eps 0-0.05, with PGD and Square checks; --paper: on normalised event counts (the "
     "fidelity audit's closest setting)", {"paper_defaults": PAPER_FGSM_FIELDS}),
    ("fisher", ("fisher",), "Figure 4: Fisher-information shares per layer (LW/RW) and traces "
     "per time step", {}),
    ("cka", ("cka",), "Figures 2-3: CKA between rules and an ANN-SNN conversion baseline, and "
     "clean-vs-adversarial CKA; 2 seeds (10 with --paper), 1000 test samples (4096 with "
     "--paper)", {"seeds": (0, 1), "paper_seeds": tuple(range(10))}),
):
    SUITES.register(_name, Suite(
        _name, f"{_what}. Trains {ANALYSED}.",
        locality_grid(_name, "nmnist-sim", "nmnist", epochs=5, **_extra), studies=_studies))
SUITES.register(
    "backdoor",
    Suite(
        "backdoor",
        "Table IV: BadNets backdoor (4-pixel trigger) at poison rates 0.1-0.9 for BPTT, e-prop, "
        "DECOLLE x FF/REC; scaled down by default (1 source/target pair, 2000 training "
        "samples, 3 epochs: 30 runs), the paper's 5 pairs and full training with --paper, "
        "whose trigger is 1 pixel at every 4th step (the fidelity audit's closest to Table IV).",
        locality_grid("backdoor", "nmnist-sim", "nmnist", epochs=3, n_train=2000,
                      variants=backdoor_variants,
                      paper_defaults={"epochs": 10, "n_train": None}),
        studies=("backdoor",),
    ),
)


def fidelity_build(opts: SuiteOptions) -> tuple[list[ExperimentSpec], list[str]]:
    """The fidelity audit's cells (harness.studies.fidelity): BPTT (``--rules`` adds
    others) FF/REC networks on each training cell, and poisoned ones for each trigger cell
    at 10 % and 30 % (every rate of the paper, and 5 pairs, with --paper); the real
    N-MNIST cells read --data-dir, else the data set's default folder, and are left out,
    with a note, where neither holds it."""
    from spikebench.harness.studies.fidelity import (
        FIDELITY_RATES,
        TRAINING_CELLS,
        TRIGGER_CELLS,
    )

    real = DATASETS.get("nmnist")
    if opts.data_dir is not None:
        real.identity(opts.data_dir)  # a --data-dir that is not there is an error, not a note
    where = real.location(opts.data_dir)
    real_dir = str(where) if where is not None and where.exists() else None
    notes = [] if real_dir else [
        f"the real N-MNIST cells were not run: no N-MNIST at {where}; give --data-dir (e.g. "
        "../shared/data/nmnist-small)"]
    sim_opts = replace(opts, data_dir=None)
    rates = POISON_RATES if opts.paper else FIDELITY_RATES
    pairs = random_pairs(5 if opts.paper else 1, 10, seed=0)
    base = {"suite": "fidelity", "epochs": 3, "n_train": 2000}

    def spec(rule, arch, seed, data: dict, backdoor: dict | None = None):
        if data.get("dataset") == "nmnist":
            data = {**data, "data_dir": real_dir}
        return sim_opts.apply(ExperimentSpec(rule=rule, arch=arch, seed=seed,
                                             backdoor=backdoor or {}, **{**base, **data}))

    grid = [(r, a, s) for r in opts.rules or ["bptt"] for a in opts.archs or list(ARCHS)
            for s in opts.seeds or [0]]
    specs = []
    for data in TRAINING_CELLS.values():  # grouped by data: each data set is loaded once
        if "dataset" in data and not real_dir:
            continue
        specs += [spec(r, a, s, data) for r, a, s in grid]
        specs += [spec(r, a, s, data, {"source": src, "target": tgt, "rate": rate, **fields})
                  for fields, cell_data in TRIGGER_CELLS.values() if cell_data == data
                  for r, a, s in grid for src, tgt in pairs for rate in rates]
    return specs, notes


SUITES.register(
    "fidelity",
    Suite(
        "fidelity",
        "Fidelity audit of Tables III-IV: FGSM and backdoor magnitudes under the choices the "
        "paper leaves open (binary / count / normalised frames, clipping, eps scale, the ANN "
        "counterpart's units, trigger size, position, polarity and presence, real vs "
        "simulated N-MNIST), each beside the paper's numbers; BPTT FF/REC by default, "
        "3 epochs on 2000 samples (real N-MNIST with --data-dir).",
        fidelity_build,
        studies=("fidelity",),
        options=frozenset({"data_dir", "epochs", "seeds", "n_train", "n_test", "batch_size",
                           "lr", "paper", "n_steps", "rules", "archs", "rule_options",
                           "n_eval"}),
    ),
)


def hybrid_suite(name: str, encoders: list[str], paper_encoders: list[str] | None,
                 what: str, **defaults) -> Suite:
    def runner(suite: Suite, out_dir: Path, opts: SuiteOptions, runs_dir: Path, executor):
        specs, notes = hybrid.hybrid_specs(name, encoders, opts, paper_encoders, **defaults)
        return hybrid.run_hybrid_specs(name, suite.description, specs, out_dir, runs_dir,
                                       opts.progress, notes, executor)

    return Suite(name, what, lambda opts: ([], []), runner=runner, options=HYBRID_OPTIONS)


SUITES.register("hybrid-resnet", hybrid_suite(
    "hybrid-resnet", ["resnet18", "resnet50"], None,
    "ResNet-18/50 encoders with the default, a LIF and a ParaLIF head (double transfer), "
    "FGSM/DeepFool/Square; Fashion-MNIST (Debian package; else MNIST-5k), CIFAR-10/100 with "
    "--dataset and --data-dir; CPU-scaled by default (5000/1000 images at 32 px, the "
    "study's 10 + 10 epochs), the study's settings with --paper (224 px, all images)."))
SUITES.register("hybrid-vit", hybrid_suite(
    "hybrid-vit", ["vit_small"], ["vit_b_16"],
    "ViT encoder (a small ViT that trains on a CPU; ViT-B/16 at 224 px with --paper) with the "
    "default, a LIF and a ParaLIF head, attacked like hybrid-resnet."))
SUITES.register("hybrid-lenet", hybrid_suite(
    "hybrid-lenet", ["lenet5"], None,
    "LeNet-5 trained from scratch on 28x28 images (10 epochs, SGD lr 0.05) with the default, "
    "a LIF and a ParaLIF head: the small hybrid, attacked like hybrid-resnet.", lr=0.05))


def _robust_runner(suite: Suite, out_dir: Path, opts: SuiteOptions, runs_dir: Path, executor):
    specs, notes = robust.robust_specs(suite.name, opts)
    return robust.run_robust_specs(suite.name, suite.description, specs, out_dir, runs_dir,
                                   opts.progress, notes, executor)


SUITES.register("robust", Suite(
    "robust",
    "Defences for spiking networks, attacked by one adaptive ensemble: vanilla and "
    "adversarially trained LIF SNNs, DLIF with Gaussian noise (rho 0) and DLIF + MS-MPPD "
    "(Gaussian and adversarial; Ding et al. 2024), robust ANN-to-SNN conversion with "
    "robust fine-tuning (Özdenizci & Legenstein 2024); conv SNNs with direct input, T=4, "
    "on Fashion-MNIST (Debian package; else MNIST-5k); CIFAR-10/100 with --dataset and "
    "--data-dir, the papers' VGG-11 / T=8 / eps 8/255 settings with --paper.",
    lambda opts: ([], []), runner=_robust_runner, options=ROBUST_OPTIONS))


def _compress_runner(suite: Suite, out_dir: Path, opts: SuiteOptions, runs_dir: Path,
                     executor):
    specs, notes = compress.compress_specs(suite.name, opts)
    return compress.run_compress_specs(suite.name, suite.description, specs, out_dir,
                                       runs_dir, opts.progress, notes, executor)


SUITES.register("compress-robust", Suite(
    "compress-robust",
    "HIRE-SNN crafted-noise training and attention-guided compression (AGC; Kundu et al. "
    "2021), alone and combined, against standard training: clean, FGSM, PGD (adaptive "
    "ensemble), Gaussian accuracy, nonzero weights, SynOps and spikes at T in {2, 4, 8} for "
    "direct and rate input, an AGC sweep from 2.5x to 30x, a Pareto plot; Fashion-MNIST "
    "(else MNIST-5k), CIFAR with --dataset/--data-dir, the papers' sizes with --paper.",
    lambda opts: ([], []), runner=_compress_runner, options=ROBUST_OPTIONS))


def legacy_run_notes(specs: list[ExperimentSpec], runs_dir: Path) -> list[str]:
    """Run folders made by spikebench 0.1, whose ids did not cover the data folder: they
    are not reused (they may hold runs on other data), and the report says so."""
    old = sorted({s.without_data_identity().run_id for s in specs if s.data_dir}
                 & {p.name for p in runs_dir.iterdir()} if runs_dir.is_dir() else set())
    if not old:
        return []
    return [f"{len(old)} run folder(s) in {runs_dir} were made by spikebench 0.1, whose run "
            "ids did not cover the data folder, so they are not reused (they may hold runs on "
            f"other data): {', '.join(old)}. Delete them once you no longer need them."]


def run_suite(name: str, out_dir: str | Path, opts: SuiteOptions | None = None,
              runs_dir: str | Path | None = None, executor=None) -> SuiteResult:
    """Train (or reuse) every run of suite ``name`` under ``runs_dir`` (default
    ``out_dir/runs``; runs are keyed by their spec's id, so suites that share a runs folder
    train each spec once), run the suite's studies, write results and report to ``out_dir``."""
    suite = SUITES.get(name)
    opts = opts or SuiteOptions()
    executor = executor or InProcessExecutor()
    suite.check_options(opts)
    out_dir = Path(out_dir)
    # absolute: a run may train in another process or on another machine
    runs_dir = (Path(runs_dir) if runs_dir is not None else out_dir / "runs").absolute()
    if suite.runner is not None:
        return suite.runner(suite, out_dir, opts, runs_dir, executor)
    specs, notes = suite.build(opts)
    if not specs:
        why = f": {'; '.join(notes)}" if notes else ""
        raise ConfigError(f"suite {name!r} has no runs with the options given{why}")
    specs = with_data_identity(specs)
    notes += legacy_run_notes(specs, runs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)  # only once the suite has valid runs
    executor.prepare(runs_dir)
    n_runs, progress = len(specs), opts.progress

    def train_one(i: int, spec: ExperimentSpec) -> RunResult:  # runs in any process
        log.info("[%d/%d] %s", i, n_runs, spec.run_id)
        progress_line(f"run {i}/{n_runs}: {spec.run_id}", progress)
        train, test = spec_data(spec, progress)
        result = train_run(spec, runs_dir / spec.run_id, train, test, progress)
        if result.skipped:
            log.info("%s already %s; skipped", spec.run_id, result.status)
            progress_line(f"run {i}/{n_runs}: already {result.status}, skipped", progress)
        result.sizes = {"n_train": len(train), "n_test": len(test)}
        return result

    done: dict[int, tuple[list[dict], list[dict]]] = {}

    def record(i: int, result: RunResult) -> None:
        """results.csv is rewritten as each run ends, its rows in the suite's order."""
        done[i] = tidy_rows(result.spec, result.metrics, result.status, result.sizes)
        order = sorted(done)
        write_atomic(to_frame([r for k in order for r in done[k][0]]), out_dir / "results.csv")
        write_atomic(timings_frame([t for k in order for t in done[k][1]]),
                     out_dir / "timings.csv")

    runs = executor.run(specs, train_one, record)
    table = to_frame([r for k in sorted(done) for r in done[k][0]])
    timings = [t for k in sorted(done) for t in done[k][1]]
    status = {r.spec.run_id: (r.status, r.message) for r in runs}
    ctx = StudyContext(name, out_dir, [(r, runs_dir / r.spec.run_id) for r in runs], spec_data,
                       paper=opts.paper, n_eval=opts.n_eval, progress=opts.progress,
                       runs_dir=runs_dir, executor=executor)
    sections = []
    for study in suite.studies:
        t0 = time.perf_counter()
        output = STUDIES.get(study)(ctx)
        for table_name, df in output.tables.items():
            write_atomic(df, out_dir / f"{table_name}.csv")
        sections += output.sections
        sections += [f"*{study}: {time.perf_counter() - t0:.0f} s on {len(ctx.done)} "
                     f"model(s); tables: {', '.join(f'`{t}.csv`' for t in output.tables)}*", ""]
    report = write_report(out_dir, name, suite.description, table, status, notes, sections,
                          show_accuracy="backdoor" not in suite.studies, specs=specs,
                          timings=timings_frame(timings))
    return SuiteResult(table, runs, report)
