"""The suite protocol, the command line's options and the one driver.

A suite is a name, a description, a *kind* and the studies it runs on its trained models.
The kind (``SuiteKind``) is what differs between suite families: the options it uses, its
specs, how one spec runs (its stages through the engine's one ``fit`` loop, in whatever
process the executor picks), its tables (rewritten as each run ends) and its report.
``run_suite`` is the one driver: it runs every kind on either executor, writes the
tables atomically, runs the studies and writes the report. Rerunning a suite skips
finished runs and resumes interrupted ones from their last epoch.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from spikebench.engine.executor import InProcessExecutor, RunResult
from spikebench.engine.results import SuiteResult, write_atomic
from spikebench.engine.spec import ARCHS, ExperimentSpec, check_field_types, with_data_identity
from spikebench.errors import ConfigError
from spikebench.io import atomic_write, mark_output
from spikebench.learning_rules import RULES
from spikebench.models import CONV_ARCHS
from spikebench.progress import progress_line
from spikebench.registry import Registry

log = logging.getLogger(__name__)


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
    rate_steps: int | None = None  # compress-robust: T of the rate-coded baseline
    rules: list[str] | None = None
    archs: list[str] | None = None
    rule_options: dict | None = None
    neuron: str | None = None  # e.g. "paralif" (None: the suite's, LIF)
    neuron_options: dict | None = None  # e.g. {"spike_fn": "GS"}
    paper: bool = False  # the paper's settings (seeds, samples, pairs) where they differ
    encoders: list[str] | None = None  # hybrid suites: image encoders (None: the suite's)
    weights: str | None = None  # hybrid suites: a torchvision-format encoder state_dict
    n_eval: int | None = None  # test samples the studies analyse (None: study default)
    studies: list[str] | None = None  # studies run besides the suite's own
    device: str | None = None  # "cpu", "cuda[:N]" (the CLI resolves "auto"); None: cpu
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.data_dir, Path):
            self.data_dir = str(self.data_dir)
        check_field_types(self, OPTION_FLAGS)  # a string for a list is refused here
        for name in ("seeds", "rules", "archs", "encoders", "studies"):
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
            if name == "seeds" and any(not 0 <= v < 2**32 for v in values):
                raise ConfigError(f"seeds must lie in 0..{2**32 - 1} (the random generators' "
                                  f"range), got {[v for v in values if not 0 <= v < 2**32]}")
        for r in self.rules or []:
            RULES.get(r)  # an unknown name is an error listing the known rules
        for a in self.archs or []:
            if a not in ARCHS and a not in CONV_ARCHS:
                raise ConfigError(f"unknown arch {a!r}; known archs: {', '.join(ARCHS)} (SNN "
                                  f"suites), {', '.join(CONV_ARCHS)} (robust suites)")
        for name in ("epochs", "n_train", "n_test", "batch_size", "n_steps", "n_eval",
                     "rate_steps"):
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


@dataclass
class SuiteRun:
    """What a kind's report gets from the driver: the suite, where it writes, the specs
    (with their data identity), the runs, the final tables, notes, the studies' Markdown
    sections and the wall time since the suite started."""

    suite: Suite
    out_dir: Path
    runs_dir: Path
    opts: SuiteOptions
    specs: list
    runs: list[RunResult]
    tables: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    wall_s: float = 0.0


class SuiteKind(Protocol):
    """What a suite family supplies; the driver (``run_suite``) does the rest.

    ``files`` maps the keys of ``tables`` to the files they are written to; ``tables``
    must hold ``"tidy"`` (``results.csv``) and ``"timings"`` (``timings.csv``).
    ``run_one`` runs in any process (an executor's task): it must reach everything it
    needs through the spec, ``runs_dir`` and module-level functions."""

    options: frozenset[str]
    files: dict[str, str]
    # (optional) ``refuses``: option -> why the kind cannot take it (the error says so);
    # ``places_sections``: True where ``report`` places ``run.sections`` (the studies')
    # itself, else the driver appends them to the report

    def specs(self, suite: Suite, opts: SuiteOptions) -> tuple[list, list[str]]: ...

    def run_one(self, spec, runs_dir: Path, say: Callable[[str], None],
                progress: bool) -> RunResult: ...

    def tables(self, suite: str, results: list[RunResult]) -> dict[str, Any]: ...

    def report(self, run: SuiteRun) -> Path: ...


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    kind: SuiteKind
    studies: tuple[str, ...] = ()  # analyses run on the trained models (spikebench.studies)
    options: frozenset[str] | None = None  # SuiteOptions it uses (None: its kind's)

    def accepted(self, opts: SuiteOptions | None = None) -> frozenset[str]:
        """The options it uses: its own (or its kind's), ``studies``, and ``n_eval`` where
        a study that samples the test set runs (the frontier study times one batch)."""
        from spikebench.studies import STUDIES
        own = self.options if self.options is not None else self.kind.options
        names = [*self.studies, *((opts.studies or []) if opts is not None else [])]
        analysed = any(getattr(STUDIES.get(n), "uses_n_eval", True)
                       for n in names if n in STUDIES)
        return own | {"studies"} | ({"n_eval"} if analysed else frozenset())

    def all_studies(self, opts: SuiteOptions) -> tuple[str, ...]:
        """The suite's studies, then those ``--studies`` adds."""
        return tuple(dict.fromkeys([*self.studies, *(opts.studies or [])]))

    def check_studies(self, opts: SuiteOptions) -> None:
        """Each added study exists and can analyse this suite's models, or says why not."""
        from spikebench.studies import STUDIES

        for name in opts.studies or []:
            study = STUDIES.get(name)  # an unknown name lists the known studies
            if getattr(study, "mlp_only", False) and self.kind.data is None:
                generic = [n for n, f in STUDIES.items() if not getattr(f, "mlp_only", False)]
                raise ConfigError(
                    f"study {name!r} analyses spiking MLPs trained by a learning rule (it "
                    f"needs their data set and decision), and suite {self.name!r} trains "
                    f"other models; studies that take any suite's models: "
                    f"{', '.join(generic)}")
            if not getattr(study, "mlp_only", False) and getattr(self.kind, "trained",
                                                                    None) is None:
                raise ConfigError(f"suite {self.name!r} cannot hand its trained models to "
                                  f"study {name!r} (its kind has no ``trained``)")

    def specs(self, opts: SuiteOptions) -> tuple[list, list[str]]:
        """The suite's specs from the options (without their data identity), and notes."""
        return self.kind.specs(self, opts)

    def check_options(self, opts: SuiteOptions) -> None:
        """An option this suite does not use is an error that says so (never ignored)."""
        self.check_studies(opts)
        unused = [f for f in OPTION_FLAGS if f not in self.accepted(opts)
                  and getattr(opts, f) not in (None, False, [], {}, ())]
        why = getattr(self.kind, "refuses", {})
        for f in unused:
            if f in why:
                raise ConfigError(f"suite {self.name!r} takes no {OPTION_FLAGS[f]}: {why[f]}")
        if unused:
            flags = ", ".join(OPTION_FLAGS[f] for f in unused)
            users = sorted(n for n, s in SUITES.items() if all(f in s.accepted()
                                                               for f in unused))
            raise ConfigError(
                f"suite {self.name!r} does not use {flags}; drop it"
                + (f" (suites that use it: {', '.join(users)})" if users else ""))


SUITES: Registry[Suite] = Registry("suite")


class ImageKind:
    """The image suites' common ``run_one``: the run's images (loaded once per process
    and data set) and its folder with ``spec.json`` (``engine.data.image_run``), then the
    kind's ``stages(spec, train, test, run_dir, runs_dir, say, progress)``; the sample
    counts it used go into epoch 0 of ``results.csv``."""

    data = None  # no per-spec data for the studies (they take spiking MLPs)

    def stages(self, spec, train, test, run_dir: Path, runs_dir: Path, say,
               progress: bool) -> RunResult:
        raise NotImplementedError

    def run_one(self, spec, runs_dir: Path, say, progress: bool) -> RunResult:
        from spikebench.engine.data import image_run

        train, test, run_dir = image_run(spec, runs_dir, progress)
        result = self.stages(spec, train, test, run_dir, runs_dir, say, progress)
        result.sizes = {"n_train": len(train[0]), "n_test": len(test[0])}  # as used
        return result


OPTION_FLAGS = {"data_dir": "--data-dir", "dataset": "--dataset", "epochs": "--epochs",
                "seeds": "--seeds", "n_train": "--n-train", "n_test": "--n-test",
                "batch_size": "--batch-size", "lr": "--lr", "n_steps": "--steps",
                "rules": "--rules", "archs": "--archs", "rule_options": "--rule-option",
                "neuron": "--neuron", "neuron_options": "--neuron-option", "paper": "--paper",
                "encoders": "--encoders", "weights": "--weights", "n_eval": "--n-eval",
                "studies": "--studies", "device": "--device",
                "rate_steps": "--rate-steps"}
COMMON_OPTIONS = frozenset({"data_dir", "dataset", "epochs", "seeds", "n_train", "n_test",
                            "batch_size", "lr", "paper", "device"})
SNN_OPTIONS = COMMON_OPTIONS | {"n_steps", "rules", "archs", "rule_options", "neuron",
                                "neuron_options"}
HYBRID_OPTIONS = COMMON_OPTIONS | {"encoders", "weights", "n_eval", "neuron"}
ROBUST_OPTIONS = COMMON_OPTIONS | {"n_steps", "n_eval", "archs"}


def legacy_run_notes(specs: list[ExperimentSpec], runs_dir: Path) -> list[str]:
    """Run folders made by spikebench 0.1, whose ids did not cover the data folder: they
    are not reused (they may hold runs on other data), and the report says so."""
    old = sorted({s.without_data_identity().run_id for s in specs
                  if s.data_dir and hasattr(s, "without_data_identity")}
                 & {p.name for p in runs_dir.iterdir()} if runs_dir.is_dir() else set())
    if not old:
        return []
    return [f"{len(old)} run folder(s) in {runs_dir} were made by spikebench 0.1, whose run "
            "ids did not cover the data folder, so they are not reused (they may hold runs on "
            f"other data): {', '.join(old)}. Delete them once you no longer need them."]


def append_sections(report: Path, sections: list[str]) -> None:
    """The studies' Markdown sections at the end of ``report``."""
    text = report.read_text().rstrip("\n")
    atomic_write(report, lambda tmp: Path(tmp).write_text(
        text + "\n\n" + "\n".join(sections).rstrip("\n") + "\n"))


def state_config(report: Path, path: Path, config: str) -> None:
    """``config`` (TOML) into ``path`` and as the report's last section."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(config))
    text = report.read_text().rstrip("\n")
    section = ["", "## Configuration", "",
               f"As resolved from the command line (and `--config`); `{path.name}` holds it, "
               f"and `spikebench run --config {path.name}` runs it again:", "",
               "```toml", config.rstrip("\n"), "```", ""]
    atomic_write(report, lambda tmp: Path(tmp).write_text(text + "\n" + "\n".join(section)))


def run_suite(name: str, out_dir: str | Path, opts: SuiteOptions | None = None,
              runs_dir: str | Path | None = None, executor=None,
              config: str | None = None, tracker=None) -> SuiteResult:
    """Train (or reuse) every run of suite ``name`` under ``runs_dir`` (default
    ``out_dir/runs``; runs are keyed by their spec's id, so suites that share a runs folder
    train each spec once), run the suite's studies, write results and report to ``out_dir``.
    ``config``: the command's resolved configuration (TOML), written to
    ``out_dir/config.toml`` and stated at the end of the report. ``tracker``: a
    ``tracking.Tracker`` that gets each run as it ends and the plots at the end."""
    from spikebench.studies import STUDIES, StudyContext

    suite = SUITES.get(name)
    opts = opts or SuiteOptions()
    executor = executor or InProcessExecutor()
    suite.check_options(opts)
    out_dir = Path(out_dir)
    # absolute: a run may train in another process or on another machine
    runs_dir = (Path(runs_dir) if runs_dir is not None else out_dir / "runs").absolute()
    t_start = time.perf_counter()
    specs, notes = suite.specs(opts)
    if not specs:
        why = f": {'; '.join(notes)}" if notes else ""
        raise ConfigError(f"suite {name!r} has no runs with the options given{why}")
    specs = with_data_identity(specs)
    notes = list(notes) + legacy_run_notes(specs, runs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)  # only once the suite has valid runs
    executor.prepare(runs_dir)
    # left out of data fingerprints (io.OUTPUT_MARKER): --out, and a runs folder elsewhere
    runs_dir.mkdir(parents=True, exist_ok=True)
    mark_output(out_dir)
    if not runs_dir.is_relative_to(out_dir.absolute()):
        mark_output(runs_dir)
    kind, n_runs, progress = suite.kind, len(specs), opts.progress

    def train_one(i: int, spec) -> RunResult:  # runs in any process
        def say(message: str) -> None:
            progress_line(f"run {i}/{n_runs}: {message}", progress)

        log.info("[%d/%d] %s", i, n_runs, spec.run_id)
        say(spec.run_id)
        return kind.run_one(spec, runs_dir, say, progress)

    done: dict[int, RunResult] = {}

    def record(i: int, result: RunResult) -> None:
        """The tables are rewritten as each run ends, their rows in the suite's order."""
        done[i] = result
        if tracker is not None:
            tracker.log_run(result)
        got = kind.tables(name, [done[k] for k in sorted(done)])
        for key, file in kind.files.items():
            write_atomic(got[key], out_dir / file)

    runs = executor.run(specs, train_one, record)
    tables = kind.tables(name, runs)
    sections: list[str] = []
    studies = suite.all_studies(opts)
    if studies:
        ctx = StudyContext(name, out_dir, [(r, runs_dir / r.spec.run_id) for r in runs],
                           kind.data, paper=opts.paper, n_eval=opts.n_eval,
                           progress=progress, runs_dir=runs_dir, executor=executor,
                           trained=getattr(kind, "trained", None))
        for study in studies:
            t0 = time.perf_counter()
            output = STUDIES.get(study)(ctx)
            for table_name, df in output.tables.items():
                write_atomic(df, out_dir / f"{table_name}.csv")
            sections += output.sections
            sections += [f"*{study}: {time.perf_counter() - t0:.0f} s on {len(ctx.done)} "
                         f"model(s); tables: "
                         f"{', '.join(f'`{t}.csv`' for t in output.tables)}*", ""]
    report = kind.report(SuiteRun(suite, out_dir, runs_dir, opts, specs, runs, tables, notes,
                                  sections, time.perf_counter() - t_start))
    if sections and not getattr(kind, "places_sections", False):
        append_sections(Path(report), sections)  # after the kind's own report
    if config is not None:
        state_config(Path(report), out_dir / "config.toml", config)
    if tracker is not None:
        tracker.log_outputs(out_dir)
    tidy = tables["tidy"]
    return SuiteResult(tidy if isinstance(tidy, pd.DataFrame) else pd.DataFrame(), runs, report)
