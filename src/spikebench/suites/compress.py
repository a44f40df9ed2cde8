"""The ``compress-robust`` suites: HIRE-SNN crafted-noise training and attention-guided
compression (AGC), alone and combined, measured together for accuracy, robustness and
cost (docs/suites/robust.md, sections 3-4), in two regimes (``CompressSpec.regime``):

- ``hybrid`` (``compress-robust``, the papers'): DIET-SNN-style hybrid training, the AGC
  pipeline and a rate-coded SNN at long latency (``compress_hybrid``);
- ``scratch`` (``compress-robust-scratch``, ours): LIF conv SNNs with BatchNorm trained by
  BPTT from scratch, the methods below.

Methods of the scratch regime (a run of the one executor each, keyed by its spec):

- ``standard``: a LIF conv SNN (``robust`` suite's neuron: leak 0.99, hard reset) trained
  by BPTT on cross-entropy;
- ``hire``: the same trained by HIRE-SNN's period schedule (``training.hire``);
- ``agc``: the ``standard`` run's model as the uncompressed teacher, pruned one shot to
  ``density`` (AGC's layer densities, ``training.prune``) and fine-tuned on CE + the
  attention-transfer loss against the teacher (``agc-unguided``: on CE alone);
- ``hire+agc``: the ``hire`` run's model pruned the same way and fine-tuned with the HIRE
  schedule plus the attention loss.

The teacher is the suite's own run of the same settings (the same spec id: trained once;
an AGC run trains it itself if it is missing). The grid is method x T x input coding
(direct: the image as current at every step; bernoulli: a rate code, attacked with EOT),
plus a compression sweep of ``agc`` over ``sweep_densities`` at the default T and direct
input. Every model is attacked (``attacks.diagnostics.evaluate_protocol``) and counted
(``metrics.efficiency.conv_workload``: SynOps, spikes, nonzero parameters).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from spikebench.attacks.diagnostics import evaluate_protocol
from spikebench.attacks.ensemble import (
    REFERENCE_ROUTES,
    accuracy,
    parse_route,
)
from spikebench.datasets.encoders import INPUT_CODINGS
from spikebench.engine.data import (
    conv_arch,
    default_image_dataset,
    epoch_batches,
    image_data,
    image_shape,
)
from spikebench.engine.executor import (
    CHECKPOINT,
    RunResult,
    Training,
    fit,
    learner_step,
    load_trained,
)
from spikebench.engine.spec import check_device, check_field_types, identity_core
from spikebench.engine.train import resolve_device, seed_everything
from spikebench.errors import ConfigError
from spikebench.io import digest
from spikebench.metrics.efficiency import conv_workload
from spikebench.models import CONV_ARCHS, ConvNet
from spikebench.studies import cached
from spikebench.studies.base import TrainedModel
from spikebench.suites.base import ROBUST_OPTIONS, SUITES, ImageKind, Suite, SuiteRun
from spikebench.suites.compress_hybrid import hybrid_specs, train_hybrid
from spikebench.suites.robust import neuron_params
from spikebench.training.hire import Hire, HireSchedule
from spikebench.training.hybrid import diet_params
from spikebench.training.prune import (
    Guided,
    Pruner,
    attention_guidance,
    compression_ratio,
    layer_densities,
    layer_importance,
    nonzero_weights,
    prunable,
)
from spikebench.training.robust import Objective

METHODS = ("standard", "hire", "agc", "hire+agc", "agc-unguided")
TEACHER = {"agc": "standard", "hire+agc": "hire", "agc-unguided": "standard"}
GUIDED = ("agc", "hire+agc")  # the AGC methods with attention guidance (beta agc_beta)
REGIMES = ("scratch", "hybrid")  # BPTT from scratch with BatchNorm (ours); DIET-SNN's
EVALUATION_VERSION = 2  # 2: best-iterate PGD, APGD-CE and APGD-DLR in the ensemble
# in the AGC runs' ids; 2: CE saliency in eval mode, the HIRE periods' own attention maps
AGC_VERSION = 2
EVAL_FIELDS = ("pgd_restarts", "apgd_steps", "apgd_targets", "eps", "n_attack", "pgd_steps",
               "routes", "square_queries", "sigma", "eot")



@dataclass(frozen=True)
class CompressSpec:
    method: str = "standard"
    coding: str = "direct"
    steps: int = 4
    density: float = 0.1  # AGC's global density (10x compression)
    dataset: str = "fashion-mnist"
    arch: str = "vgg-small"
    seed: int = 0
    n_train: int | None = 3000
    n_test: int | None = 1000
    epochs: int = 3
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    leak: float = 0.99
    hire_periods: int = 2
    hire_eps: float = 0.05
    hire_craft: str = "free"
    agc_beta: float = 10.0
    finetune_epochs: int = 2
    finetune_lr: float = 0.01
    n_importance: int = 256  # training images for the layer saliencies
    eps: float = 0.1
    sigma: float = 0.1
    n_attack: int = 150
    pgd_steps: int = 7
    pgd_restarts: int = 1  # PGD's random starts (best iterate kept per sample)
    apgd_steps: int = 10  # APGD-CE and APGD-DLR iterations (0: none)
    apgd_targets: int = 0  # APGD-T's target classes (0: none; 9 with --paper)
    fab_targets: int = 0  # FAB-T's target classes (0: none; 9 with --paper)
    routes: tuple[str, ...] = ("surrogate", "triangle:0.5", "bptr")
    square_queries: int = 50
    eot: int = 4
    augment: bool = False  # random crop (4 px) and flip of training batches (--paper)
    regime: str = "scratch"  # "hybrid": ANN -> thresholds -> SNN fine-tuning (DIET-SNN)
    ann_epochs: int = 10  # hybrid: the BatchNorm-free ANN's epochs (AGC: the compressed one's)
    percentile: float = 99.7  # hybrid: the threshold percentile (DIET-SNN's)
    threshold_scale: float = 0.5  # hybrid: factor on balanced thresholds (ours, see docs)
    n_calib: int = 640  # hybrid: training images for the thresholds
    calibration_steps: int | None = None  # hybrid: T of the calibration (None: the SNN's T)
    suite: str = "compress-robust"
    data_dir: str | None = None
    data_fingerprint: str | None = None
    device: str = "cpu"  # where it trains and is attacked ("cuda", "cuda:N")

    def __post_init__(self) -> None:
        object.__setattr__(self, "routes", tuple(self.routes))
        check_field_types(self)
        check_device(self.device)
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; known: {', '.join(METHODS)}")
        INPUT_CODINGS.get(self.coding)
        CONV_ARCHS.get(self.arch)
        HireSchedule(self.hire_periods, self.hire_eps, self.hire_craft).window(self.steps)
        for r in self.routes:
            parse_route(r)
        if not 0 < self.density <= 1:
            raise ConfigError(f"density must lie in (0, 1], got {self.density}")
        if self.regime not in REGIMES:
            raise ConfigError(f"regime is one of {', '.join(REGIMES)}, got {self.regime!r}")
        if not (0 < self.percentile <= 100 and self.threshold_scale > 0):
            raise ConfigError(f"percentile must lie in (0, 100] and threshold_scale be > 0, "
                              f"got {self.percentile}, {self.threshold_scale}")
        if self.calibration_steps is not None and self.calibration_steps < 1:
            raise ConfigError(f"calibration_steps must be >= 1 or None, got "
                              f"{self.calibration_steps}")
        if self.apgd_steps < 0 or self.apgd_targets < 0 or self.fab_targets < 0:
            raise ConfigError(f"apgd_steps, apgd_targets and fab_targets must be >= 0, got "
                              f"{self.apgd_steps}, {self.apgd_targets}, {self.fab_targets}")
        for name in ("steps", "epochs", "batch_size", "n_attack", "finetune_epochs",
                     "pgd_restarts", "ann_epochs", "n_calib"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    # the fields each method's training reads (the rest are another method's or the
    # evaluation's, which is cached under its own key)
    def identity(self) -> dict:
        keep = ["method", "coding", "steps", "dataset", "arch", "seed", "n_train", "n_test",
                "epochs", "batch_size", "lr", "momentum", "weight_decay", "leak"]
        if "hire" in self.method:
            keep += ["hire_periods", "hire_eps", "hire_craft"]
        if self.regime != "scratch":  # added later: the scratch runs keep their ids
            keep += ["regime", "ann_epochs", "percentile", "threshold_scale", "n_calib",
                     "calibration_steps", "finetune_lr"]
        if "agc" in self.method:  # hybrid: the SNN stage takes epochs and lr as any other
            keep += ["density", "agc_beta", "finetune_epochs", "finetune_lr", "n_importance"]
            unused = ({"agc_beta"} if self.method not in GUIDED else set()) | (
                {"finetune_epochs"} if self.regime != "scratch" else set())
            keep = list(dict.fromkeys(k for k in keep if k not in unused))
            return {**identity_core(self, keep), "agc_version": AGC_VERSION}
        return identity_core(self, keep)

    @property
    def run_id(self) -> str:
        tag = self.method.replace("+", "-")
        return (f"{self.dataset}-{tag}-{self.coding}-T{self.steps}-s{self.seed}-"
                f"{digest(self.identity())}")

    def teacher(self) -> CompressSpec:
        return replace(self, method=TEACHER[self.method])

    def schedule(self) -> HireSchedule:
        return HireSchedule(self.hire_periods, self.hire_eps, self.hire_craft)


def neurons(spec: CompressSpec):
    """The SNN's neurons: the robust suite's LIF (scratch), DIET-SNN's (hybrid)."""
    if spec.regime == "hybrid":
        return diet_params(spec.steps)
    return neuron_params(spec, "lif")


def build(spec: CompressSpec, shape, classes: int, ann: bool = False) -> ConvNet:
    """The method's conv SNN (``ann``: the hybrid regime's ANN), on the spec's device."""
    hybrid = spec.regime == "hybrid"
    return ConvNet(spec.arch, shape[0], shape[1], classes, None if ann else neurons(spec),
                   steps=spec.steps, coding=spec.coding, batchnorm=not hybrid).to(
        resolve_device(spec.device))


def training(spec: CompressSpec, model, procedure, epochs: int, lr: float, test, batches,
             label: str, meta: dict | None = None) -> Training:
    """One stage's ``Training``: SGD (the spec's momentum and weight decay), cosine to 0."""
    xt, yt, _ = test
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=spec.momentum,
                          weight_decay=spec.weight_decay)
    return Training(model, opt, epochs, batches, learner_step(procedure, model, opt.step),
                    evaluate=lambda: {"acc": accuracy(model, xt, yt)},
                    scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs),
                    label=label, meta=meta or {}, note=f"lr={lr}")


def train_spec(spec: CompressSpec, run_dir: Path, runs_dir: Path, train, test,
               progress: bool) -> RunResult:
    """Train one method's run (an AGC run first makes sure its teacher is trained)."""
    if spec.regime == "hybrid":
        return train_hybrid(spec, run_dir, runs_dir, train, test, progress)
    shape, classes = image_shape(train), train[2]
    x, y, _ = train
    stage = {**asdict(spec), "stage": spec.method}
    if spec.method in TEACHER:
        teacher_spec = spec.teacher()
        teacher_res = train_spec(teacher_spec, runs_dir / teacher_spec.run_id, runs_dir,
                                 train, test, progress)
        if teacher_res.status != "done":
            return RunResult(spec, teacher_res.status, [], f"its teacher "
                             f"{teacher_spec.run_id}: {teacher_res.message}", run_dir=run_dir)

        def make() -> Training:
            teacher = load_trained(runs_dir / teacher_spec.run_id / CHECKPOINT, "teacher",
                            build(spec, shape, classes))
            student = build(spec, shape, classes)
            student.load_state_dict(teacher.state_dict())
            pruner = agc_pruner(spec, student, x, y)
            if "hire" in spec.method:
                extra = attention_guidance(teacher, spec.agc_beta)
                procedure = Hire(spec.schedule(), extra, pruner.apply)
            else:
                procedure = Guided(teacher if spec.method in GUIDED else None, spec.agc_beta,
                                   pruner.apply)
            return training(spec, student, procedure, spec.finetune_epochs, spec.finetune_lr,
                            test, epoch_batches(spec, x, y), label(spec),
                            {"density": pruner.density()})

        return fit(run_dir, spec, stage, make, progress)

    def make() -> Training:
        seed_everything(spec.seed)
        model = build(spec, shape, classes)
        procedure = Hire(spec.schedule()) if spec.method == "hire" else Objective()
        return training(spec, model, procedure, spec.epochs, spec.lr, test,
                        epoch_batches(spec, x, y), label(spec))

    return fit(run_dir, spec, stage, make, progress)


def agc_pruner(spec: CompressSpec, student, x, y) -> Pruner:
    """AGC's one-shot pruning of ``student`` (its teacher's copy) to ``spec.density``, the
    layer densities from its CE saliency on the first ``n_importance`` training images."""
    seed_everything(spec.seed)
    n = spec.n_importance
    importance = layer_importance(student, [(x[:n], y[:n])])
    sizes = [m.weight.numel() for m in prunable(student)]
    return Pruner(student, layer_densities(importance, sizes, spec.density))


def label(spec: CompressSpec, stage: str = "") -> str:
    return f"{spec.method}{stage} T={spec.steps} {spec.coding}"


def evaluate_spec(spec: CompressSpec, run_dir: Path, train, test) -> dict:
    xt, yt, _ = test
    x, y = xt[:spec.n_attack], yt[:spec.n_attack]
    params = {k: getattr(spec, k) for k in EVAL_FIELDS}
    if spec.fab_targets:  # only where on: evaluations made before FAB-T are reused
        params["fab_targets"] = spec.fab_targets

    def compute() -> dict:
        model = load_trained(run_dir / CHECKPOINT, "model",
                             build(spec, image_shape(train), train[2]))
        out = evaluate_protocol(model, x, y, spec)
        workload = conv_workload(model, x)
        out["spikes_per_image"] = workload.pop("spikes")  # the same pass as the SynOps
        out.update({f"eff_{k}": v for k, v in workload.items()})
        out["nonzero_weights"] = nonzero_weights(model)
        out["compression"] = compression_ratio(model)
        out["n"] = len(x)
        return out

    return cached(run_dir, "compress-robust", {**params, "n": len(x)}, compute,
                  EVALUATION_VERSION)


@dataclass(frozen=True)
class CompressKind(ImageKind):
    """Every method x coding x T (and the AGC sweep) trained, attacked and counted:
    ``compress.csv`` (a row per model), tidy ``results.csv``, ``timings.csv``,
    ``report.md``, ``pareto.png``. ``regime``: ``scratch`` (ours, ``compress_specs``) or
    ``hybrid`` (the papers', ``compress_hybrid.hybrid_specs``)."""

    regime: str = "scratch"

    options = ROBUST_OPTIONS
    refuses = {"neuron": "every model here is the papers' LIF SNN (HIRE-SNN, AGC), and "
               "HIRE-SNN's period-wise training carries the membranes from one period to "
               "the next, which only neurons with a ``window`` (DLIF's layer, LIF as its "
               "special case) do; other neurons train on conv nets in the robust suites' "
               "methods (spikebench.suites.robust_methods.METHODS)"}
    files = {"compress": "compress.csv", "tidy": "results.csv", "timings": "timings.csv"}

    def specs(self, suite, opts) -> tuple[list, list[str]]:
        if self.regime == "hybrid":
            return hybrid_specs(suite.name, opts)
        return compress_specs(suite.name, opts)

    def stages(self, spec: CompressSpec, train, test, run_dir: Path, runs_dir: Path, say,
               progress: bool) -> RunResult:
        result = train_spec(spec, run_dir, runs_dir, train, test, progress)
        if result.status == "done":
            result.details.update(evaluation=evaluate_spec(spec, run_dir, train, test),
                                  n_test=len(test[1]))
        return result

    @staticmethod
    def trained(spec: CompressSpec, run_dir: Path, n: int | None) -> list[TrainedModel]:
        """The run's (pruned) SNN on its first ``n`` test images (the studies' view)."""
        train, (xt, yt, _) = image_data(spec)
        model = load_trained(run_dir / CHECKPOINT, "model",
                             build(spec, image_shape(train), train[2])).eval()
        from spikebench.suites.compress_report import _base

        return [TrainedModel(_base(spec.suite, spec, "done"), model, xt[:n], yt[:n])]

    def tables(self, suite: str, results: list[RunResult]) -> dict:
        from spikebench.suites.compress_report import _tables

        return _tables(suite, results)

    def report(self, run: SuiteRun) -> Path:
        from spikebench.suites.compress_report import _plot_pareto, _write_report

        if not run.tables["compress"].empty:
            _plot_pareto(run.tables["compress"], run.out_dir / "pareto.png")
        return _write_report(run.out_dir, run.suite.name, run.suite.description, run.specs,
                             run.tables, run.notes, run.wall_s)


SWEEP_DENSITIES = (1 / 2.5, 1 / 5, 1 / 10, 1 / 30)
STEPS = (2, 4, 8)
CODINGS = ("direct", "bernoulli")
# the methods trained on rate-coded input by default: the talk's coding claim is about
# standard training and HIRE-SNN; every method is (--paper) where the budget allows it (a
# rate-coded model is attacked with EOT over 4 encodings: 2-4x a direct one's cost)
RATE_METHODS = ("standard", "hire")
PAPER = dict(arch="vgg11-ref", n_train=None, n_test=None, epochs=100, lr=0.1, eps=8 / 255,
             hire_eps=8 / 255, sigma=8 / 255, finetune_epochs=30, n_attack=1000,
             pgd_steps=7, square_queries=5000, routes=REFERENCE_ROUTES,
             pgd_restarts=5, apgd_steps=100, apgd_targets=9, fab_targets=9, augment=True)


def base_spec(name: str, opts, regime: str = "scratch") -> tuple[CompressSpec, list[str]]:
    """The suite's spec before its grid: defaults, --paper's, the command line's."""
    dataset, notes = default_image_dataset(opts, "cifar10" if opts.paper else "fashion-mnist")
    base = CompressSpec(dataset=dataset, suite=name, data_dir=opts.data_dir, regime=regime)
    if opts.paper:
        base = replace(base, **PAPER)
    base = replace(base, **conv_arch(opts, name))
    changes = {k: v for k, v in (("n_train", opts.n_train), ("n_test", opts.n_test),
                                 ("batch_size", opts.batch_size), ("lr", opts.lr),
                                 ("n_attack", opts.n_eval), ("device", opts.device))
               if v is not None}
    if opts.epochs is not None:
        changes.update(epochs=opts.epochs, finetune_epochs=max(1, opts.epochs // 2))
        if regime == "hybrid":
            changes["ann_epochs"] = opts.epochs
    return replace(base, **changes), notes


def compress_specs(name: str, opts) -> tuple[list[CompressSpec], list[str]]:
    """The grid of ``compress-robust-scratch`` (ours: BPTT from scratch with BatchNorm)."""
    base, notes = base_spec(name, opts)
    steps = [opts.n_steps] if opts.n_steps else list(STEPS)
    specs = [replace(base, method=m, coding=c, steps=t, seed=s)
             for s in (opts.seeds or [0]) for c in CODINGS for t in steps
             for m in METHODS[:4] if c == "direct" or opts.paper or m in RATE_METHODS]
    main_t = 4 if 4 in steps else steps[0]
    specs += [replace(base, method="agc", coding="direct", steps=main_t, seed=s, density=d)
              for s in (opts.seeds or [0]) for d in SWEEP_DENSITIES if d != base.density]
    return specs, notes


SUITES.register("compress-robust", Suite(
    "compress-robust",
    "HIRE-SNN crafted-noise training and attention-guided compression (AGC; Kundu et al. "
    "2021) in the papers' hybrid regime (DIET-SNN: a BatchNorm-free ANN, thresholds from "
    "its currents, SNN fine-tuning of weights, thresholds and leaks; AGC: a compressed ANN "
    "trained under the attention maps of the uncompressed one, converted, trained sparse; "
    "with and without the guidance), alone and combined, against standard hybrid training, "
    "and a rate-coded SNN at long latency (T=100): clean, FGSM, PGD, the adaptive ensemble, "
    "Gaussian accuracy, nonzero weights, SynOps and spikes at direct-input T in {2, 4, 8}, "
    "an AGC sweep from 2.5x to 30x, Pareto plots over SynOps and T; Fashion-MNIST (else "
    "MNIST-5k), CIFAR with --dataset/--data-dir, the papers' nets and sizes with --paper; "
    "transfer attacks from another seed with --seeds 0 1 (HIRE-SNN's black-box protocol).",
    CompressKind(regime="hybrid"), studies=("transfer",),
    options=ROBUST_OPTIONS | {"rate_steps"}))
SUITES.register("compress-robust-scratch", Suite(
    "compress-robust-scratch",
    "compress-robust's methods in our regime, not the papers': LIF conv SNNs with "
    "BatchNorm trained by BPTT from scratch (HIRE-SNN's periods, AGC pruning the SNN "
    "itself and fine-tuning it under the teacher SNN's attention maps), direct and rate "
    "input at the same T in {2, 4, 8}, an AGC sweep, a Pareto plot (the suite that was "
    "compress-robust before 2026-12-04: the same run ids).",
    CompressKind(), studies=("transfer",)))
