"""The ``robust`` suite: defences against adversarial inputs for spiking networks, trained
on the same data and attacked by the same adaptive ensemble
(the methods and published figures: docs/suites/robust.md).

Methods (``METHODS``), each a run of the one executor (``executor.fit``) in its folder:

- ``vanilla``: a LIF SNN (leak 0.99, hard reset, triangle surrogate), cross-entropy;
- ``at``: the same SNN adversarially trained (Ding et al.'s one-step AT: x~ = FGSM from
  x + 0.001 N(0, I), loss 0.5 CE(x) + 0.5 CE(x~));
- ``gauss``: DLIF, Gaussian-noise training without the regulariser (rho = 0);
- ``dlif-gauss``, ``dlif-at``: DLIF + MS-MPPD (rho = 1) with Gaussian or FGSM inputs;
- ``conversion`` (Özdenizci & Legenstein): an adversarially trained ANN (``ann/``: PGD-AT
  or TRADES), converted by threshold balancing to IF neurons with hard reset, then robust
  fine-tuning of weights, BatchNorm and per-layer thresholds (``finetune/``: CE + beta KL
  against RFGSM-KL inputs). Three models are evaluated: ``ann``, ``converted`` (before
  fine-tuning) and ``conversion``.

Every model is attacked (``attacks.ensemble.robust_evaluation``) at ``eps``: FGSM and PGD
through its own surrogate and every gradient route, Square, Gaussian noise, the per-sample
ensemble; PGD also over ``eps_sweep``; cached under their parameters in the run folder.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from spikebench.attacks.diagnostics import evaluate_protocol
from spikebench.attacks.ensemble import (
    DEFAULT_ROUTES,
    REFERENCE_ROUTES,
    accuracy,
    parse_route,
    robust_evaluation,
)
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
    load_checkpoint,
    load_trained,
    restore,
    weights_digest,
)
from spikebench.engine.results import write_atomic
from spikebench.engine.spec import check_device, check_field_types, identity_core
from spikebench.engine.train import resolve_device, seed_everything
from spikebench.errors import ConfigError
from spikebench.io import atomic_write, digest
from spikebench.metrics.efficiency import conv_workload
from spikebench.models import CONV_ARCHS, ConvNet, is_residual
from spikebench.studies import cached
from spikebench.studies.base import TrainedModel
from spikebench.suites.base import ROBUST_OPTIONS, SUITES, ImageKind, Suite, SuiteRun
from spikebench.suites.robust_methods import (  # noqa: F401 (re-exported: the suite's API)
    METHOD_ORDER,
    METHODS,
    MODEL_ORDER,
    SNN_FIELDS,
    Method,
    model_names,
    neuron_params,
    ortho_beta,
)
from spikebench.training.conversion import convert_conv
from spikebench.training.robust import Objective

ANN_OBJECTIVES = ("pgd-at", "trades", "mart")  # the conversion's base ANN
CONVERTED = "converted.pt"  # a conversion run's converted SNN, before fine-tuning
EVALUATION_VERSION = 3  # 3: best-iterate PGD, APGD-CE/DLR; 2: BPTR through DLIF's a[t]


COMMON_FIELDS = ("method", "dataset", "arch", "steps", "seed", "n_train", "n_test",
                 "batch_size", "momentum", "weight_decay")
EVAL_FIELDS = ("pgd_restarts", "apgd_steps", "apgd_targets", "eps", "eps_sweep", "n_attack",
               "pgd_steps", "square_queries", "routes", "eot")


@dataclass(frozen=True)
class RobustSpec:
    method: str = "vanilla"
    dataset: str = "fashion-mnist"
    arch: str = "vgg-small"
    steps: int = 4  # T: direct input, the image as current at every step
    seed: int = 0
    n_train: int | None = 6000
    n_test: int | None = 1000
    epochs: int = 4
    batch_size: int = 64
    lr: float = 0.05  # SGD, cosine to 0 (the papers: 0.1 for 100-200 epochs)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    leak: float = 0.99  # lambda of the LIF and DLIF neurons
    eps_train: float = 0.05  # crafted training inputs (the papers: 4/255 and 2/255)
    sigma: float = 0.1  # Gaussian training noise (Ding: 8/255 = 2 eps_train)
    chi: float = 0.5  # weight of the clean CE
    rho: float = 1.0  # MS-MPPD weight (methods with the regulariser)
    ann_epochs: int = 4
    ann_objective: str = "pgd-at"  # or "trades", "mart"
    ann_steps: int = 3  # PGD steps of the ANN's adversarial training
    trades_beta: float = 6.0
    mart_beta: float = 4.0  # MART's KL weight (the conversion reference's)
    threshold_scale: float = 0.3  # the conversion code's factor on balanced thresholds
    percentile: float = 99.7
    n_calib: int = 640  # training images for threshold balancing
    calib_steps: int = 25  # T of the calibration (the reference's 100 with --paper)
    finetune_epochs: int = 2  # the paper: 60
    finetune_lr: float = 5e-3  # the paper: 1e-3 for 60 epochs
    finetune_beta: float = 2.0
    finetune_weight_decay: float = 5e-4  # the reference: 1e-3 (with --paper)
    ortho_beta: float | None = None  # AT+Reg's step (None: Ding's 0.004 for WRN, else 0.001)
    cutout: int = 0  # side of the cutout square on training images (0: none)
    eps: float = 0.1  # the attacks' L-inf radius (pixels in [0, 1])
    eps_sweep: tuple[float, ...] = (0.025, 0.05, 0.1, 0.15)
    n_attack: int = 200  # test images attacked
    pgd_steps: int = 7
    pgd_restarts: int = 1  # PGD's random starts (best iterate kept per sample)
    apgd_steps: int = 10  # APGD-CE and APGD-DLR iterations (0: none)
    apgd_targets: int = 0  # APGD-T's target classes (0: none; 9 with --paper)
    fab_targets: int = 0  # FAB-T's target classes (0: none; 9 with --paper)
    square_queries: int = 100
    routes: tuple[str, ...] = DEFAULT_ROUTES
    eot: int = 4  # encodings per gradient for a stochastic input coding
    augment: bool = False  # random crop (4 px) and flip of training batches (--paper)
    suite: str = "robust"
    data_dir: str | None = None
    data_fingerprint: str | None = None
    device: str = "cpu"  # where it trains and is attacked ("cuda", "cuda:N")

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps_sweep", tuple(float(e) for e in self.eps_sweep))
        object.__setattr__(self, "routes", tuple(self.routes))
        check_field_types(self)
        check_device(self.device)
        CONV_ARCHS.get(self.arch)
        if METHODS.get(self.method).neuron == "conversion" and is_residual(self.arch):
            raise ConfigError(f"method {self.method!r} cannot convert {self.arch}: threshold "
                              f"balancing folds each threshold into the next weight layer, "
                              "which a residual identity path does not have; choose a VGG")
        for r in self.routes:
            parse_route(r)
        if self.ann_objective not in ANN_OBJECTIVES:
            raise ConfigError(f"ann_objective is one of {', '.join(ANN_OBJECTIVES)}, got "
                              f"{self.ann_objective!r}")
        if self.cutout < 0 or (self.ortho_beta is not None and self.ortho_beta < 0):
            raise ConfigError(f"cutout and ortho_beta must be >= 0, got {self.cutout}, "
                              f"{self.ortho_beta}")
        if self.apgd_steps < 0 or self.apgd_targets < 0 or self.fab_targets < 0:
            raise ConfigError(f"apgd_steps, apgd_targets and fab_targets must be >= 0, got "
                              f"{self.apgd_steps}, {self.apgd_targets}, {self.fab_targets}")
        for name in ("steps", "epochs", "batch_size", "n_attack", "ann_epochs", "n_calib",
                     "pgd_restarts", "calib_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and self.finetune_lr > 0):
            raise ConfigError(f"learning rates must be positive, got {self.lr}, "
                              f"{self.finetune_lr}")

    def identity(self) -> dict:
        """What defines the trained models: the common fields, the method's own, the data."""
        return identity_core(self, COMMON_FIELDS + METHODS.get(self.method).fields)

    @property
    def run_id(self) -> str:
        return f"{self.dataset}-{self.method}-s{self.seed}-{digest(self.identity())}"

    def evaluation(self) -> dict:
        """The attacks' parameters (the evaluation cache's key; FAB-T only where on, so
        that evaluations made before it are reused)."""
        out = {k: getattr(self, k) for k in EVAL_FIELDS}
        return {**out, "fab_targets": self.fab_targets} if self.fab_targets else out


def build(spec: RobustSpec, shape, classes: int, kind: str | None) -> ConvNet:
    """The method's SNN (``kind`` lif / dlif) or, with ``kind=None``, its ANN."""
    channels, size = shape
    params = None if kind is None else neuron_params(spec, kind)
    return ConvNet(spec.arch, channels, size, classes, params, steps=spec.steps).to(
        resolve_device(spec.device))


def _sgd(params, lr: float, spec: RobustSpec, epochs: int, decay: float):
    opt = torch.optim.SGD(params, lr=lr, momentum=spec.momentum, weight_decay=decay)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))


def _training(spec, model, objective, epochs, lr, train, test, label,
              decay: float | None = None) -> Training:
    (x, y, _), (xt, yt, _) = train, test
    opt, schedule = _sgd(model.parameters(), lr, spec, epochs,
                         spec.weight_decay if decay is None else decay)
    return Training(model, opt, epochs, epoch_batches(spec, x, y),
                    learner_step(objective, model, opt.step),
                    evaluate=lambda: {"acc": accuracy(model, xt, yt)}, scheduler=schedule,
                    label=label, note=f"lr={lr}")


def snn_objective(spec: RobustSpec, method: Method) -> Objective:
    return Objective("mix", method.objective, eps=spec.eps_train, sigma=spec.sigma,
                     chi=spec.chi if method.objective != "none" else 1.0,
                     rho=spec.rho if method.rho else 0.0,
                     ortho_beta=ortho_beta(spec) if method.ortho else 0.0)


def train_method(spec: RobustSpec, run_dir: Path, train, test, progress: bool
                 ) -> dict[str, RunResult]:
    """The method's stage runs (one, or ``ann`` and ``finetune`` for conversion)."""
    method, shape, classes = METHODS.get(spec.method), image_shape(train), train[2]
    if method.neuron != "conversion":
        def make() -> Training:
            seed_everything(spec.seed)
            model = build(spec, shape, classes, method.neuron)
            return _training(spec, model, snn_objective(spec, method), spec.epochs, spec.lr,
                             train, test, f"{spec.method} SNN")

        return {spec.method: fit(run_dir, spec, {**asdict(spec), "stage": spec.method}, make,
                                 progress)}

    def make_ann() -> Training:
        seed_everything(spec.seed)
        obj = Objective(spec.ann_objective, eps=spec.eps_train, steps=spec.ann_steps,
                        beta=spec.mart_beta if spec.ann_objective == "mart" else
                        spec.trades_beta)
        return _training(spec, build(spec, shape, classes, None), obj, spec.ann_epochs,
                         spec.lr, train, test, f"ANN ({spec.ann_objective})")

    stages = {"ann": fit(run_dir / "ann", spec, {**asdict(spec), "stage": "ann"}, make_ann,
                         progress)}
    if stages["ann"].status != "done":
        return stages

    def make_finetune() -> Training:
        snn = converted(spec, trained_ann(spec, run_dir, shape, classes), train, run_dir)
        seed_everything(spec.seed)
        obj = Objective("finetune", eps=spec.eps_train, beta=spec.finetune_beta)
        return _training(spec, snn, obj, spec.finetune_epochs, spec.finetune_lr, train, test,
                         "converted SNN fine-tuning", spec.finetune_weight_decay)

    stages["conversion"] = fit(run_dir / "finetune", spec, {**asdict(spec), "stage": "finetune"},
                               make_finetune, progress)
    return stages


def trained_ann(spec: RobustSpec, run_dir: Path, shape, classes: int) -> ConvNet:
    return load_trained(run_dir / "ann" / CHECKPOINT, "ANN", build(spec, shape, classes, None))


def converted(spec: RobustSpec, ann: ConvNet, train, run_dir: Path) -> ConvNet:
    """The trained ANN converted (deterministic: the first ``n_calib`` training images),
    kept in the run folder (``converted.pt``) once made: calibrating at ``calib_steps``
    costs minutes, and the fine-tuning, the attacks and the studies each need it. It is
    made again where the ANN's weights are not the ones it was made from."""
    path, source = run_dir / CONVERTED, weights_digest(ann)
    if path.is_file():
        saved = load_checkpoint(path, ("model", "ann"))
        if saved["ann"] == source:
            snn = build(spec, (ann.in_channels, ann.image_size), ann.classes, "conversion")
            restore(path, "converted SNN", snn, saved["model"])
            return snn.eval()
    snn = convert_conv(ann, train[0][:spec.n_calib], neuron_params(spec, "conversion"),
                       spec.steps, spec.percentile, spec.threshold_scale,
                       calib_steps=spec.calib_steps)
    atomic_write(path, lambda tmp: torch.save({"model": snn.state_dict(), "ann": source}, tmp))
    return snn



def trained_models(spec: RobustSpec, run_dir: Path, train) -> dict[str, ConvNet]:
    """The models a finished run yields, by name."""
    method, shape, classes = METHODS.get(spec.method), image_shape(train), train[2]
    if method.neuron != "conversion":
        return {spec.method: load_trained(run_dir / CHECKPOINT, "SNN",
                                   build(spec, shape, classes, method.neuron))}
    ann = trained_ann(spec, run_dir, shape, classes)
    conv = converted(spec, ann, train, run_dir)  # the fine-tuned model starts as its copy
    tuned = load_trained(run_dir / "finetune" / CHECKPOINT, "fine-tuned SNN", copy.deepcopy(conv))
    names = model_names(spec.method)
    return {names["ann"]: ann, names["converted"]: conv, names["conversion"]: tuned}


def evaluate_model(spec: RobustSpec, run_dir: Path, name: str, model, test) -> dict:
    """The adaptive attacks on the first ``n_attack`` test images (cached)."""
    xt, yt, _ = test
    x, y = xt[:spec.n_attack], yt[:spec.n_attack]

    def compute() -> dict:
        torch.manual_seed(spec.seed)
        out = evaluate_protocol(model, x, y, spec)
        for e in spec.eps_sweep:
            if e == spec.eps:  # the ensemble's own FGSM and PGD at this eps
                out[f"pgd@{e:g}"], out[f"fgsm@{e:g}"] = out["pgd"], out["fgsm"]
                continue
            sweep = robust_evaluation(model, x, y, e, ("surrogate",), spec.pgd_steps, 0,
                                      spec.sigma, spec.eot, seed=spec.seed)
            out[f"pgd@{e:g}"] = sweep["pgd"]
            out[f"fgsm@{e:g}"] = sweep["fgsm"]
        out["spikes_per_image"] = conv_workload(model, x)["spikes"]
        out["n"] = len(x)
        return out

    return cached(run_dir, f"robust-{name}", {**spec.evaluation(), "n": len(x)}, compute,
                  EVALUATION_VERSION)


@dataclass(frozen=True)
class RobustKind(ImageKind):
    """Every defence trained and attacked: ``robust.csv`` (a row per model), tidy
    ``results.csv`` (a row per stage run, epoch and metric), ``timings.csv``,
    ``report.md``, ``robust_eps.png`` (DLIF's gains: ``dlif_gains.csv`` and PNG) of
    ``methods`` (None: every registered one but the ablations')."""

    methods: tuple[str, ...] | None = None

    options = ROBUST_OPTIONS
    files = {"robust": "robust.csv", "tidy": "results.csv", "timings": "timings.csv"}
    refuses = {"neuron": "each defence is defined by its neuron (vanilla, at: LIF; gauss, "
               "dlif-gauss, dlif-at: DLIF; conversion: IF from an ANN); to train another "
               "neuron, register a method in spikebench.suites.robust_methods.METHODS"}

    def specs(self, suite, opts) -> tuple[list, list[str]]:
        return robust_specs(suite.name, opts, self.methods)

    def stages(self, spec: RobustSpec, train, test, run_dir: Path, runs_dir: Path, say,
               progress: bool) -> RunResult:
        t0 = time.perf_counter()
        stages = train_method(spec, run_dir, train, test, progress)
        train_s = time.perf_counter() - t0
        failed = [r for r in stages.values() if r.status != "done"]
        if failed:
            return RunResult(spec, "diverged", [], failed[0].message, run_dir=run_dir,
                             skipped=failed[0].skipped,
                             details={"stages": stages, "evaluation": {}})
        t0 = time.perf_counter()
        evaluation, gains = {}, {}
        for model_name, model in trained_models(spec, run_dir, train).items():
            say(f"attacking {model_name}")
            evaluation[model_name] = evaluate_model(spec, run_dir, model_name, model, test)
            if model.spiking and model.neuron.dynamic:  # DLIF's learnt a_l[t]
                gains[model_name] = [n.gain.detach()[:spec.steps].tolist()
                                     for n in model.neurons()]
        return RunResult(spec, "done", [], skipped=all(r.skipped for r in stages.values()),
                         run_dir=run_dir,
                         details={"stages": stages, "evaluation": evaluation, "gains": gains,
                                  "train_s": train_s, "attack_s": time.perf_counter() - t0})

    @staticmethod
    def trained(spec: RobustSpec, run_dir: Path, n: int | None) -> list[TrainedModel]:
        """Every model of the run (conversion: the ANN, the converted and the fine-tuned
        SNN) on its first ``n`` test images (the studies' view)."""
        from spikebench.suites.robust_report import _model_run_id, _row_base

        train, (xt, yt, _) = image_data(spec)
        return [TrainedModel(_row_base(spec.suite, spec, name, _model_run_id(spec, name), "done"),
                             model.eval(), xt[:n], yt[:n])
                for name, model in trained_models(spec, run_dir, train).items()]

    def tables(self, suite: str, results: list[RunResult]) -> dict:
        from spikebench.suites.robust_report import _tables

        return _tables(suite, results)

    def report(self, run: SuiteRun) -> Path:
        from spikebench.suites.robust_report import _plot_eps, _plot_gains, _write_report

        tables, out_dir = run.tables, run.out_dir
        if not tables["robust"].empty:
            _plot_eps(tables["robust"], run.specs[0], out_dir / "robust_eps.png")
        if not tables["gains"].empty:
            write_atomic(tables["gains"], out_dir / "dlif_gains.csv")
            _plot_gains(tables["gains"], out_dir / "dlif_gains.png")
        return _write_report(out_dir, run.suite.name, run.suite.description, run.specs,
                             tables["robust"], run.notes + tables["notes"], run.wall_s,
                             run.runs)


PAPER = dict(arch="vgg11-ref", steps=8, n_train=None, n_test=None, epochs=100, lr=0.1,
             eps_train=4 / 255, sigma=8 / 255, ann_epochs=200, finetune_epochs=60,
             finetune_lr=1e-3, ann_steps=10, eps=8 / 255,
             eps_sweep=(2 / 255, 4 / 255, 8 / 255, 16 / 255), n_attack=1000, pgd_steps=10,
             square_queries=5000, routes=REFERENCE_ROUTES,
             calib_steps=100, pgd_restarts=5, apgd_steps=100, apgd_targets=9, fab_targets=9,
             augment=True)


def robust_methods() -> list[str]:
    """The robust suite's methods: ``METHOD_ORDER``, then a user's own (not the ablation's)."""
    return [m for m in METHOD_ORDER if m in METHODS] + [
        m for m in METHODS.names() if m not in METHOD_ORDER and not METHODS.get(m).ablation]


def robust_specs(name: str, opts, methods=None) -> tuple[list[RobustSpec], list[str]]:
    """Every method (``methods``; None: all but the ablations') x seed from the command
    line's options (``SuiteOptions``)."""
    dataset, notes = default_image_dataset(opts, "cifar10" if opts.paper else "fashion-mnist")
    base = RobustSpec(dataset=dataset, suite=name, data_dir=opts.data_dir)
    if opts.paper:
        base = replace(base, **PAPER)
    base = replace(base, **conv_arch(opts, name))
    changes = {k: v for k, v in (("n_train", opts.n_train), ("n_test", opts.n_test),
                                 ("batch_size", opts.batch_size), ("lr", opts.lr),
                                 ("steps", opts.n_steps), ("n_attack", opts.n_eval),
                                 ("device", opts.device)) if v is not None}
    if opts.epochs is not None:
        changes.update(epochs=opts.epochs, ann_epochs=opts.epochs,
                       finetune_epochs=max(1, opts.epochs // 2))
    methods = list(methods or robust_methods())
    if is_residual(base.arch):
        skipped = [m for m in methods if METHODS.get(m).neuron == "conversion"]
        methods = [m for m in methods if m not in skipped]
        notes = notes + [f"{', '.join(skipped)} not run: {base.arch} is residual, and "
                         "threshold balancing needs a weight layer after every neuron"]
    def own(m: str) -> dict:  # the method's fixed fields, with --paper its paper's own
        method = METHODS.get(m)
        return {**dict(method.fixed), **(dict(method.paper) if opts.paper else {})}

    specs = [replace(base, method=m, seed=s, **{**own(m), **changes})
             for m in methods for s in (opts.seeds or [0])]
    return specs, notes


SUITES.register("robust", Suite(
    "robust",
    "Defences for spiking networks, attacked by one adaptive ensemble: vanilla and "
    "adversarially trained LIF SNNs, DLIF with Gaussian noise (rho 0) and DLIF + MS-MPPD "
    "(Gaussian and adversarial; Ding et al. 2024), robust ANN-to-SNN conversion with "
    "robust fine-tuning (Özdenizci & Legenstein 2024); conv SNNs with direct input, T=4, "
    "on Fashion-MNIST (Debian package; else MNIST-5k); CIFAR-10/100 with --dataset and "
    "--data-dir, the papers' VGG-11 / T=8 / eps 8/255 settings with --paper; transfer "
    "attacks (from another seed, from the conversion's ANN) beside the white-box ones.",
    RobustKind(), studies=("transfer",)))
