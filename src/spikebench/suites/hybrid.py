"""The hybrid studies: image encoders with the default, a LIF and a ParaLIF head, trained by
"double transfer", attacked with FGSM, DeepFool and Square (docs/suites/hybrid.md).

Per (data set, encoder, seed) the runs folder holds one run:

- ``encoder/``: the encoder fine-tuned with its default head, the stages before layer3
  frozen (ViT: patch embedding and the first half of the blocks; LeNet-5: nothing), SGD
  (lr 1e-3, momentum 0.9, weight decay 5e-4); ``encoder.pt``, ``metrics.json``;
- ``head-lif/``, ``head-paralif/`` (``head-<neuron>/`` with ``--neuron``): the spiking
  head trained on the frozen encoder's features (the second transfer), same optimiser;
  test accuracy over ``eval_seeds`` encodings (mean ± std: the rate code is stochastic);
- ``analysis/``: attack results per head (cached, so a rerun costs nothing).
Each stage writes ``status.json`` when it ends; a rerun skips ended stages."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from spikebench.attacks.art import attack_accuracy
from spikebench.attacks.ensemble import accuracy
from spikebench.engine.data import default_image_dataset, epoch_batches, image_data
from spikebench.engine.executor import (
    CHECKPOINT,
    RunResult,
    Training,
    fit,
    learner_step,
    load_checkpoint,
    read_json,
    restore,
)
from spikebench.engine.spec import check_device, check_field_types, identity_core
from spikebench.engine.train import resolve_device, seed_everything
from spikebench.errors import ConfigError, RunFileError
from spikebench.io import digest
from spikebench.metrics.efficiency import hybrid_workload
from spikebench.models import device_of
from spikebench.models.hybrid import (
    IMAGE_ENCODERS,
    HybridNet,
    SpikingHead,
    build_encoder,
)
from spikebench.neurons import NEURONS
from spikebench.studies import cached
from spikebench.studies.base import TrainedModel
from spikebench.suites.base import HYBRID_OPTIONS, SUITES, ImageKind, Suite, SuiteRun
from spikebench.training.robust import Objective

log = logging.getLogger(__name__)

HYBRID_EPS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1)
SQUARE_EPS = 0.05
# the id covers the data (folder, fingerprint) as ExperimentSpec's, and a device not the CPU
# and the spiking heads, whose stages have their own folders in the run's
NOT_IN_ID = ("suite", "data_dir", "data_fingerprint", "device", "heads")


@dataclass(frozen=True)
class HybridSpec:
    dataset: str = "fashion-mnist"
    encoder: str = "resnet18"
    seed: int = 0
    image_size: int | None = None  # None: the encoder's CPU default (ResNet: 32)
    n_train: int | None = 5000
    n_test: int | None = 1000
    finetune_epochs: int = 10  # the study's 10 + 10
    head_epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-2  # SGD; the study's 1e-3 (with --paper or --weights) assumes pretrained
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"  # per epoch to 0 (random init is noisy at the end without);
    # "constant": the study's (with --paper)
    steps: int = 20  # rate-code steps of the spiking heads
    eval_seeds: int = 5  # encodings averaged for accuracy (mean ± std)
    n_attack: int = 500  # test samples attacked by FGSM
    n_strong: int = 100  # ... and by DeepFool and Square (costly: see attack_run)
    eot: int = 8  # encodings per attack query (expectation over transformation)
    weights: str | None = None  # torchvision-format state_dict of the encoder
    suite: str = "hybrid-resnet"
    data_dir: str | None = None  # resolved folder of the images (None: embedded)
    data_fingerprint: str | None = None  # of its files (DatasetInfo.identity)
    device: str = "cpu"  # where it trains and is attacked ("cuda", "cuda:N")
    heads: tuple[str, ...] = ("lif", "paralif")  # spiking heads' neurons (--neuron: one)

    def __post_init__(self) -> None:
        check_field_types(self)
        check_device(self.device)
        IMAGE_ENCODERS.get(self.encoder)  # an unknown name lists the known ones
        for neuron in self.heads:
            NEURONS.get(neuron)  # an unknown name lists the known ones
        if not self.heads or len(set(self.heads)) != len(self.heads):
            raise ConfigError(f"heads: one or more distinct neurons, got {self.heads}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ConfigError(f"lr_schedule is 'cosine' or 'constant', got {self.lr_schedule!r}")

    @property
    def variants(self) -> tuple[str, ...]:
        """The encoder's default head, then the spiking heads."""
        return ("default", *self.heads)

    @property
    def run_id(self) -> str:
        keys = [k for k in asdict(self) if k not in NOT_IN_ID]
        return f"{self.dataset}-{self.encoder}-s{self.seed}-{digest(identity_core(self, keys))}"


def _sgd(params, spec: HybridSpec, epochs: int):
    """SGD and its per-epoch learning-rate schedule."""
    opt = torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                          weight_decay=spec.weight_decay)
    if spec.lr_schedule == "cosine":
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    return opt, torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)


def _freeze(net: HybridNet) -> list[torch.nn.Module]:
    frozen = net.info.frozen(net.encoder)
    for part in frozen:
        for p in ([part] if isinstance(part, torch.nn.Parameter) else part.parameters()):
            p.requires_grad_(False)
    return [m for m in frozen if isinstance(m, torch.nn.Module)]


def _check_layout(stage: Path) -> None:
    """Stage folders of spikebench 0.1 (encoder.pt / head.pt, no status version) are not
    read as this version's: a clear message instead of a wrong reuse."""
    status = stage / "status.json"
    if status.is_file() and "version" not in (read_json(status, "status") or {}):
        raise RunFileError(
            f"{stage} was written by spikebench 0.1 (another stage layout); delete the run "
            f"folder {stage.parent} to retrain it with this version, then rerun")


def finetune_encoder(spec: HybridSpec, run_dir: Path, train, test, progress: bool
                     ) -> RunResult:
    """First transfer: the encoder with its default head (``executor.fit``, SGD)."""
    stage = run_dir / "encoder"
    _check_layout(stage)
    (x, y, classes), (xt, yt, _) = train, test

    def make() -> Training:
        seed_everything(spec.seed)
        encoder, info, size = build_encoder(spec.encoder, classes, spec.image_size,
                                            spec.weights)
        net = HybridNet(encoder, info, size).to(resolve_device(spec.device))
        frozen = _freeze(net)
        opt, schedule = _sgd([p for p in net.parameters() if p.requires_grad], spec,
                             spec.finetune_epochs)
        return Training(net, opt, spec.finetune_epochs, epoch_batches(spec, x, y),
                        learner_step(Objective(), net, opt.step),
                        evaluate=lambda: {"acc": accuracy(net, xt, yt)},
                        scheduler=schedule, frozen=frozen, meta={"stage": "encoder"},
                        label=f"{spec.encoder} fine-tuning", note=f"lr={spec.lr}")

    return fit(stage, spec, {**asdict(spec), "stage": "encoder"}, make, progress)


def load_encoder(spec: HybridSpec, run_dir: Path, classes: int):
    encoder, info, size = build_encoder(spec.encoder, classes, spec.image_size)
    net = HybridNet(encoder, info, size)
    path = run_dir / "encoder" / CHECKPOINT
    restore(path, "encoder", net, load_checkpoint(path)["model"])
    return encoder.to(resolve_device(spec.device)).eval(), info, size


@torch.no_grad()
def _features(net: HybridNet, x, batch: int = 256) -> torch.Tensor:
    net.eval()
    device = device_of(net)
    return torch.cat([net.features(x[i:i + batch].to(device))
                      for i in range(0, len(x), batch)])


@torch.no_grad()
def _head_accuracy(head: SpikingHead, f_test, yt, encodings: int) -> dict[str, float]:
    """Test accuracy over ``encodings`` rate codes (mean, std), training's RNG untouched."""
    head.eval()
    accs = []
    with torch.random.fork_rng():
        for s in range(encodings):
            torch.manual_seed(10_000 + s)
            accs.append(float((head(f_test).argmax(-1).cpu() == yt).float().mean()))
    head.train()
    return {"acc": float(np.mean(accs)),
            "acc_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0}


def train_head(spec: HybridSpec, run_dir: Path, neuron: str, train, test,
               progress: bool) -> RunResult:
    """Second transfer: a spiking head on the frozen, fine-tuned encoder's features."""
    stage = run_dir / f"head-{neuron}"
    _check_layout(stage)
    (x, y, classes), (xt, yt, _) = train, test

    def make() -> Training:
        encoder, info, size = load_encoder(spec, run_dir, classes)
        net = HybridNet(encoder, info, size).to(resolve_device(spec.device))
        f_train, f_test = _features(net, x), _features(net, xt)
        seed_everything(spec.seed)
        head = SpikingHead(f_train.shape[1], classes, neuron, spec.steps).to(f_train.device)
        opt, schedule = _sgd(list(head.parameters()), spec, spec.head_epochs)
        return Training(head, opt, spec.head_epochs, epoch_batches(spec, f_train, y),
                        learner_step(Objective(), head, opt.step),
                        evaluate=lambda: _head_accuracy(head, f_test, yt, spec.eval_seeds),
                        scheduler=schedule, meta={"stage": f"head-{neuron}"},
                        label=f"{spec.encoder}+{neuron} head", note=f"lr={spec.lr}")

    return fit(stage, spec, {**asdict(spec), "stage": f"head-{neuron}"}, make, progress)


def hybrid_net(spec: HybridSpec, run_dir: Path, variant: str, classes: int) -> HybridNet:
    encoder, info, size = load_encoder(spec, run_dir, classes)
    head = None
    if variant != "default":
        head = SpikingHead(encoder.feature_dim, classes, variant, spec.steps)
        path = run_dir / f"head-{variant}" / CHECKPOINT
        restore(path, "head", head, load_checkpoint(path)["model"])
    net = HybridNet(encoder, info, size, head, eot=spec.eot if head is not None else 1)
    return net.to(resolve_device(spec.device)).eval()


def attack_run(spec: HybridSpec, run_dir: Path, variant: str, test) -> list[dict]:
    """FGSM at HYBRID_EPS on the first ``n_attack`` test samples, DeepFool (at most 100
    iterations, each with a gradient per class) and Square (100 queries, eps SQUARE_EPS) on
    the first ``n_strong``; success rate over the samples the model classified correctly
    before the attack."""
    xt, yt, classes = test
    x, y = xt[:spec.n_attack], yt[:spec.n_attack]
    n_strong = min(spec.n_strong, spec.n_attack)
    xs, ys = xt[:n_strong], yt[:n_strong]

    def compute():
        net = hybrid_net(spec, run_dir, variant, classes)
        out = []
        for eps in HYBRID_EPS:
            torch.manual_seed(spec.seed)
            out.append({"attack": "fgsm", "eps": eps, "n": len(x),
                        **attack_accuracy(net, x, y, eps, "fgsm", clip=(0.0, 1.0))})
        for attack, eps in (("deepfool", 0.0), ("square", SQUARE_EPS)):
            torch.manual_seed(spec.seed)
            out.append({"attack": attack, "eps": eps, "n": len(xs),
                        **attack_accuracy(net, xs, ys, eps, attack, clip=(0.0, 1.0))})
        return out

    return cached(run_dir, f"attacks-{variant}", {"n": len(x), "n_strong": len(xs),
                                                 "eps": list(HYBRID_EPS),
                                                 "square_eps": SQUARE_EPS, "eot": spec.eot},
                  compute)


def efficiency_run(spec: HybridSpec, run_dir: Path, test) -> dict[str, dict]:
    """The efficiency metrics (``analysis.efficiency.hybrid_workload``) of every head on the
    test images, per image (cached beside the attacks)."""
    xt, _, classes = test

    def compute():
        net = hybrid_net(spec, run_dir, "default", classes)
        heads = {v: (None if v == "default" else hybrid_net(spec, run_dir, v, classes)
                     .spiking_head) for v in spec.variants}
        with torch.random.fork_rng():
            torch.manual_seed(spec.seed)
            return hybrid_workload(net, heads, xt)

    return cached(run_dir, "efficiency", {"n": len(xt), "heads": list(spec.variants)},
                  compute)


def stage_name(variant: str) -> str:
    """A head's stage (its folder in the run's): ``encoder`` or ``head-<neuron>``."""
    return "encoder" if variant == "default" else f"head-{variant}"


@dataclass(frozen=True)
class HybridKind(ImageKind):
    """Encoders fine-tuned with their default head, then LIF and ParaLIF heads on their
    features, each attacked (``hybrid.csv``, ``hybrid_attacks.csv``, tidy ``results.csv``:
    a row per stage run, epoch and metric, ``timings.csv``, ``report.md``, plots)."""

    encoders: tuple[str, ...]
    paper_encoders: tuple[str, ...] | None = None
    defaults: tuple[tuple[str, object], ...] = ()  # the suite's own spec fields
    options = HYBRID_OPTIONS
    files = {"hybrid": "hybrid.csv", "attacks": "hybrid_attacks.csv", "tidy": "results.csv",
             "timings": "timings.csv"}

    def specs(self, suite, opts) -> tuple[list, list[str]]:
        return hybrid_specs(suite.name, list(self.encoders), opts,
                            list(self.paper_encoders) if self.paper_encoders else None,
                            **dict(self.defaults))

    def stages(self, spec: HybridSpec, train, test, run_dir: Path, runs_dir: Path, say,
               progress: bool) -> RunResult:
        """The stages of one run and its attacks (what an executor runs, anywhere)."""
        stages = {"default": finetune_encoder(spec, run_dir, train, test, progress)}
        if stages["default"].status == "done":
            for neuron in spec.heads:
                stages[neuron] = train_head(spec, run_dir, neuron, train, test, progress)
        failed = [r for r in stages.values() if r.status != "done"]
        if failed:
            return RunResult(spec, "diverged", [], failed[0].message, skipped=failed[0].skipped,
                             run_dir=run_dir,
                             details={"stages": stages, "attacks": {},
                                      "failed": failed[0].run_dir.name})
        attacks = {variant: attack_run(spec, run_dir, variant, test)
                   for variant in spec.variants}
        return RunResult(spec, "done", [], skipped=all(r.skipped for r in stages.values()),
                         run_dir=run_dir,
                         details={"stages": stages, "attacks": attacks,
                                  "efficiency": efficiency_run(spec, run_dir, test)})

    @staticmethod
    def trained(spec: HybridSpec, run_dir: Path, n: int | None) -> list[TrainedModel]:
        """The run's spiking heads (LIF, ParaLIF) on the fine-tuned encoder's features of its
        first ``n`` test images (the studies' view; the default head is not spiking)."""
        from spikebench.suites.hybrid_report import _row_base

        _, (xt, yt, classes) = image_data(spec)
        out = []
        for neuron in spec.heads:
            net = hybrid_net(spec, run_dir, neuron, classes)
            head = net.spiking_head.eval()
            out.append(TrainedModel(_row_base(spec.suite, spec, neuron, "done"), head,
                                    _features(net, xt[:n]), yt[:n], head.encode))
        return out

    def tables(self, suite: str, results: list[RunResult]) -> dict:
        from spikebench.suites.hybrid_report import _tables

        return _tables(suite, results)

    def report(self, run: SuiteRun) -> Path:
        from spikebench.suites.hybrid_report import _plot_attacks, _plot_efficiency, _write_report

        table, attacks = run.tables["hybrid"], run.tables["attacks"]
        if not attacks.empty:
            _plot_attacks(attacks, run.out_dir / "hybrid_attacks.png")
        if not table.empty:
            _plot_efficiency(table, run.out_dir / "efficiency.png")
        return _write_report(run.out_dir, run.suite.name, run.suite.description, run.specs,
                             table, attacks, run.notes + run.tables["notes"], run.wall_s)


def hybrid_specs(name: str, encoders: list[str], opts, paper_encoders=None,
                 **defaults) -> tuple[list, list]:
    """The suite's specs from the command line's options (``SuiteOptions``); ``defaults``:
    the suite's own spec fields."""
    dataset, notes = default_image_dataset(opts)
    chosen = opts.encoders or (paper_encoders if opts.paper and paper_encoders else encoders)
    if opts.weights and len(chosen) != 1:
        raise ConfigError("--weights loads one encoder's weights; choose it with --encoders")
    base = HybridSpec(dataset=dataset, suite=name, data_dir=opts.data_dir,
                      weights=opts.weights, **defaults)
    if opts.paper or opts.weights:
        base = replace(base, lr=1e-3)
    if opts.neuron is not None:
        base = replace(base, heads=(opts.neuron,))
    if opts.paper:
        base = replace(base, n_train=None, n_test=None, lr_schedule="constant",
                       n_attack=1000, n_strong=1000)
    changes = {k: v for k, v in (("n_train", opts.n_train), ("n_test", opts.n_test),
                                 ("batch_size", opts.batch_size), ("lr", opts.lr),
                                 ("n_attack", opts.n_eval), ("device", opts.device))
               if v is not None}
    if opts.epochs is not None:
        changes.update(finetune_epochs=opts.epochs, head_epochs=opts.epochs)
    specs = [replace(base, encoder=e, seed=s,
                     image_size=IMAGE_ENCODERS.get(e).paper_size if opts.paper else None, **changes)
             for e in chosen for s in (opts.seeds or [0])]
    return specs, notes


def hybrid_suite(name: str, encoders: list[str], paper_encoders: list[str] | None,
                 what: str, **defaults) -> Suite:
    return Suite(name, what, HybridKind(tuple(encoders),
                                        tuple(paper_encoders) if paper_encoders else None,
                                        tuple(defaults.items())))


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
