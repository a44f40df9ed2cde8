"""The locality paper's suites: BPTT, e-prop and DECOLLE x FF/REC spiking MLPs (the
default suite, N-MNIST, TIMIT, FSDD) and the analysis suites that train the same grid and
study it (FGSM, Fisher, CKA, backdoor, the fidelity audit)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from spikebench.analysis.cka import mlp_inputs
from spikebench.datasets import DATASETS
from spikebench.datasets.poison import POISON_RATES, random_pairs
from spikebench.engine.data import spec_data, spec_test_set
from spikebench.engine.executor import RunResult
from spikebench.engine.results import identity, tidy_rows, timings_frame, to_frame
from spikebench.engine.spec import ARCHS, ExperimentSpec
from spikebench.engine.train import train_run
from spikebench.learning_rules import RULES
from spikebench.papers.locality import PAPER_FGSM_FIELDS, PAPER_TRIGGER
from spikebench.report.markdown import RULE_ORDER, ordered, write_report
from spikebench.studies.base import TrainedModel, eval_samples, load_model
from spikebench.suites.base import SNN_OPTIONS, SUITES, Suite, SuiteOptions, SuiteRun

log = logging.getLogger(__name__)

LOCALITY_RULES = ("bptt", "eprop", "decolle")


@dataclass(frozen=True)
class SNNKind:
    """Spiking MLPs trained by a learning rule (``ExperimentSpec`` runs through
    ``engine.train.train_run``): one row per run, epoch and metric in ``results.csv``, the
    accuracy table beside the locality paper's, curves, efficiency."""

    build: object  # SuiteOptions -> (specs, notes)
    options: frozenset[str] = SNN_OPTIONS
    files = {"tidy": "results.csv", "timings": "timings.csv"}
    places_sections = True  # the studies' sections before the report's notes

    def specs(self, suite: Suite, opts: SuiteOptions) -> tuple[list, list[str]]:
        return self.build(opts)

    @staticmethod
    def data(spec):
        return spec_data(spec)

    @staticmethod
    def trained(spec: ExperimentSpec, run_dir: Path, n: int | None) -> list[TrainedModel]:
        """The run's spiking MLP on its first ``n`` test samples (the studies' view)."""
        test = spec_test_set(spec)
        x, y = eval_samples(test, n)
        model = load_model(run_dir)
        columns = identity(spec.suite, spec.run_id, "train", spec.dataset, spec.arch,
                           spec.neuron, spec.rule, spec.seed, "done")
        return [TrainedModel(columns, model, x, y, mlp_inputs(model, test.encode),
                             spec.burn_in)]

    def run_one(self, spec: ExperimentSpec, runs_dir: Path, say, progress: bool) -> RunResult:
        train, test = spec_data(spec, progress)
        result = train_run(spec, runs_dir / spec.run_id, train, test, progress)
        if result.skipped:
            log.info("%s already %s; skipped", spec.run_id, result.status)
            say(f"already {result.status}, skipped")
        result.sizes = {"n_train": len(train), "n_test": len(test)}
        return result

    def tables(self, suite: str, results: list[RunResult]) -> dict:
        rows = [tidy_rows(r.spec, r.metrics, r.status, r.sizes) for r in results]
        return {"tidy": to_frame([x for r, _ in rows for x in r]),
                "timings": timings_frame([t for _, ts in rows for t in ts])}

    def report(self, run: SuiteRun) -> Path:
        status = {r.spec.run_id: (r.status, r.message) for r in run.runs}
        return write_report(run.out_dir, run.suite.name, run.suite.description,
                            run.tables["tidy"], status, run.notes, run.sections,
                            show_accuracy="backdoor" not in run.suite.studies,
                            specs=run.specs, timings=run.tables["timings"])


def locality_grid(name: str, embedded: str | None, real: str, rules=LOCALITY_RULES,
                  seeds=(0,), paper_seeds=None, variants=None, paper_defaults=None,
                  **defaults):
    """3 rules (``rules``; None: every registered rule, in locality order) x FF/REC x seeds
    on ``embedded`` data, or ``real`` data with --data-dir (or always, where there is no
    embedded data); ``defaults`` are spec fields of this suite
    (the command line overrides them). ``variants(opts)`` optionally multiplies every run
    into several (e.g. poisoned copies), as a list of extra spec fields."""

    def build(opts: SuiteOptions) -> tuple[list[ExperimentSpec], list[str]]:
        dataset = opts.dataset or (real if opts.data_dir or embedded is None else embedded)
        wanted = opts.rules or (list(rules) if rules is not None
                                else ordered(RULES.names(), RULE_ORDER))
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


SUITES.register(
    "default",
    Suite(
        "default",
        "FF and REC LIF networks (2312-120-84-10) trained by BPTT, e-prop and DECOLLE on "
        "the embedded N-MNIST-style data (nmnist-sim), 5 epochs: the quick look.",
        SNNKind(locality_grid("default", "nmnist-sim", "nmnist", epochs=5)),
        studies=("frontier",),
    ),
)
SUITES.register(
    "locality-nmnist",
    Suite(
        "locality-nmnist",
        "The locality paper's N-MNIST study (Table II): BPTT, e-prop, DECOLLE x FF/REC, "
        "2312-120-84-10 LIF networks, 10 epochs; embedded data by default, real N-MNIST "
        "with --data-dir.",
        SNNKind(locality_grid("locality-nmnist", "nmnist-sim", "nmnist")),
        studies=("frontier",),
    ),
)


SUITES.register(
    "locality-spectrum",
    Suite(
        "locality-spectrum",
        "Every registered rule along the locality axis (BPTT, truncated BPTT, FPTT, OSTL, "
        "e-prop, OTTT, SLTT, DECOLLE, DRTP, and any rule a user registers) x FF/REC on the "
        "default suite's 2312-120-84-10 LIF networks and embedded data, 5 epochs, with the "
        "locality frontier (accuracy vs a step's memory and time); real N-MNIST with "
        "--data-dir.",
        SNNKind(locality_grid("locality-spectrum", "nmnist-sim", "nmnist", rules=None,
                              epochs=5)),
        studies=("frontier",),
    ),
)
SUITES.register(
    "locality-timit",
    Suite(
        "locality-timit",
        "The locality paper's TIMIT study (Table II): BPTT, e-prop, DECOLLE x FF/REC, "
        "39-400-61 LIF networks, frame-wise phone classification; needs --data-dir (TIMIT is "
        "licensed by the LDC).",
        SNNKind(locality_grid("locality-timit", None, "timit", epochs=10, batch_size=32)),
        studies=("frontier",),
    ),
)
SUITES.register(
    "locality-fsdd",
    Suite(
        "locality-fsdd",
        "Spoken digits (FSDD): BPTT, e-prop, DECOLLE x FF/REC, 39-200-10 LIF networks on MFCC "
        "sequences; does recurrence help on speech? Needs --data-dir (e.g. ../shared/data/fsdd).",
        SNNKind(locality_grid("locality-fsdd", None, "fsdd", epochs=10)),
        studies=("frontier",),
    ),
)


# The analysis suites train the default suite's runs (same specs, so a shared runs folder
# trains them once) and then analyse them; see spikebench.studies.
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
        SNNKind(locality_grid(_name, "nmnist-sim", "nmnist", epochs=5, **_extra)),
        studies=_studies))
SUITES.register(
    "backdoor",
    Suite(
        "backdoor",
        "Table IV: BadNets backdoor (4-pixel trigger) at poison rates 0.1-0.9 for BPTT, e-prop, "
        "DECOLLE x FF/REC; scaled down by default (1 source/target pair, 2000 training "
        "samples, 3 epochs: 30 runs), the paper's 5 pairs and full training with --paper, "
        "whose trigger is 1 pixel at every 4th step (the fidelity audit's closest to Table IV).",
        SNNKind(locality_grid("backdoor", "nmnist-sim", "nmnist", epochs=3, n_train=2000,
                              variants=backdoor_variants,
                              paper_defaults={"epochs": 10, "n_train": None})),
        studies=("backdoor",),
    ),
)


def fidelity_build(opts: SuiteOptions) -> tuple[list[ExperimentSpec], list[str]]:
    """The fidelity audit's cells (spikebench.studies.fidelity): BPTT (``--rules`` adds
    others) FF/REC networks on each training cell, and poisoned ones for each trigger cell
    at 10 % and 30 % (every rate of the paper, and 5 pairs, with --paper); the real
    N-MNIST cells read --data-dir, else the data set's default folder, and are left out,
    with a note, where neither holds it."""
    from spikebench.studies.fidelity import (
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
        SNNKind(fidelity_build),
        studies=("fidelity",),
        options=frozenset({"data_dir", "epochs", "seeds", "n_train", "n_test", "batch_size",
                           "lr", "paper", "n_steps", "rules", "archs", "rule_options",
                           "n_eval"}),
    ),
)


