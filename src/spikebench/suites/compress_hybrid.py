"""``compress-robust``'s hybrid regime: the papers' own pipelines on the one executor
(``training.hybrid``; docs/suites/robust.md, *The papers' regime*).

Learning rates: ``lr`` trains the ANNs, ``finetune_lr`` the SNNs.

- ``standard`` / ``hire``: the BatchNorm-free ANN (one run folder per data, arch, seed and
  ANN settings, shared by every T, coding and method: ``ann-...`` in the runs folder) ->
  thresholds (``hybrid_snn``) -> SNN fine-tuning on CE, or by HIRE-SNN's periods;
- ``agc`` / ``agc-unguided`` / ``hire+agc`` (AGC, Kundu et al. WACV 2021): that ANN is the
  uncompressed meta-model; its copy is pruned one shot to ``density`` (the layer rule of
  ``training.prune``, ours) and trained as a compressed ANN on CE + the attention-transfer
  loss against the meta-ANN (``agc-unguided``: CE alone, the ablation) in the run's
  ``ann/`` folder; then thresholds, and sparse SNN fine-tuning with the masks kept (CE, or
  HIRE-SNN's periods for ``hire+agc``).

The SNN fine-tuning writes the run folder's own checkpoint, so evaluation, the studies
and the report read a hybrid run as any other.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, replace
from pathlib import Path

from spikebench.engine.data import epoch_batches, image_shape
from spikebench.engine.executor import CHECKPOINT, RunResult, Training, fit, load_trained
from spikebench.engine.spec import identity_core
from spikebench.engine.train import seed_everything
from spikebench.errors import ConfigError
from spikebench.io import digest
from spikebench.models import is_residual
from spikebench.training.hire import Hire
from spikebench.training.hybrid import hybrid_snn
from spikebench.training.prune import Guided, Pruner
from spikebench.training.robust import Objective

# what the shared ANN's training reads (its folder's id)
ANN_FIELDS = ("dataset", "arch", "seed", "n_train", "n_test", "ann_epochs", "batch_size",
              "lr", "momentum", "weight_decay")


def ann_dir(spec, runs_dir: Path) -> Path:
    """The shared BatchNorm-free ANN's run folder."""
    ident = {**identity_core(spec, ANN_FIELDS), "stage": "hybrid-ann"}
    return runs_dir / f"{spec.dataset}-ann-s{spec.seed}-{digest(ident)}"


def train_hybrid(spec, run_dir: Path, runs_dir: Path, train, test, progress: bool
                 ) -> RunResult:
    """Train one hybrid-regime run: its ANN stage(s), then the SNN's fine-tuning."""
    from spikebench.suites.compress import GUIDED, agc_pruner, build, label, training

    shape, classes = image_shape(train), train[2]
    x, y, _ = train
    batches = epoch_batches(spec, x, y)
    meta_dir = ann_dir(spec, runs_dir)

    def make_ann() -> Training:
        seed_everything(spec.seed)
        ann = build(spec, shape, classes, ann=True)
        return training(spec, ann, Objective(), spec.ann_epochs, spec.lr, test, batches,
                        f"ANN (BatchNorm-free) of {spec.arch}")

    meta = fit(meta_dir, spec, {**asdict(spec), "stage": "hybrid-ann"}, make_ann, progress)
    if meta.status != "done":
        return _failed(spec, run_dir, meta, "its ANN")

    source_dir, pruned = meta_dir, "agc" in spec.method
    if pruned:
        source_dir = run_dir / "ann"

        def make_compressed() -> Training:
            teacher = load_trained(meta_dir / CHECKPOINT, "ANN",
                                   build(spec, shape, classes, ann=True))
            student = copy.deepcopy(teacher)
            pruner = agc_pruner(spec, student, x, y)
            procedure = Guided(teacher if spec.method in GUIDED else None, spec.agc_beta,
                               pruner.apply)
            return training(spec, student, procedure, spec.ann_epochs, spec.lr, test,
                            batches, label(spec, " compressed ANN"),
                            {"density": pruner.density()})

        stage = fit(source_dir, spec, {**asdict(spec), "stage": "compressed-ann"},
                    make_compressed, progress)
        if stage.status != "done":
            return _failed(spec, run_dir, stage, "its compressed ANN")

    def make_snn() -> Training:
        ann = load_trained(source_dir / CHECKPOINT, "ANN", build(spec, shape, classes, ann=True))
        seed_everything(spec.seed)
        snn = hybrid_snn(ann, x[:spec.n_calib].to(next(ann.parameters()).device), spec.steps,
                         spec.coding, spec.percentile, spec.threshold_scale,
                         spec.calibration_steps)
        after = Pruner(snn, None).apply if pruned else None
        if "hire" in spec.method:
            procedure = Hire(spec.schedule(), None, after)
        else:
            procedure = Guided(None, 0.0, after) if pruned else Objective()
        return training(spec, snn, procedure, spec.epochs, spec.finetune_lr, test, batches,
                        label(spec, " SNN"))

    result = fit(run_dir, spec, {**asdict(spec), "stage": spec.method}, make_snn, progress)
    result.details["ann_acc"] = last_acc(stage if pruned else meta)
    return result


def last_acc(result: RunResult) -> float:
    """A stage's last test accuracy (NaN where it logged none)."""
    return next((m["value"] for m in reversed(result.metrics) if m["metric"] == "test_acc"),
                float("nan"))


def _failed(spec, run_dir: Path, stage: RunResult, what: str) -> RunResult:
    return RunResult(spec, stage.status, [], f"{what}: {stage.message}", run_dir=run_dir)


HYBRID_STEPS = (2, 4, 8)  # direct input, the CPU default
PAPER_STEPS = (6, 8, 10)  # direct input at T=5-10 (HIRE-SNN's periods need an even T)
RATE_STEPS = 100  # the rate-coded baseline's latency (HIRE-SNN: up to 25x the direct T)
RATE_ATTACK = 50  # the CPU default's attacked images for it
HYBRID_FINETUNE_LR = 0.05  # the SNN fine-tuning's SGD rate at the CPU default (ours)
SWEEP = (1 / 2.5, 1 / 5, 1 / 30)  # AGC's other densities (besides the spec's 1/10)
# --paper (CIFAR, on a GPU): the references' nets in DIET-SNN's layout, the crafting with
# the updated weights (HIRE-SNN's Figure 6), DIET-SNN's 0.2 threshold scale at low T
HYBRID_PAPER = dict(hire_craft="updated", ann_epochs=200, epochs=30, finetune_lr=1e-3,
                    threshold_scale=0.2, calibration_steps=100)


def hybrid_specs(name: str, opts):
    """The ``compress-robust`` grid (the papers' regime): the four methods at every direct
    T, AGC without guidance (the ablation) and AGC's density sweep at the main T, and the
    standard SNN with rate input at ``RATE_STEPS`` (its thresholds scaled by 1: at long T
    no lowering is needed; ours), fine-tuned one epoch and attacked on ``RATE_ATTACK``
    images at the CPU default."""
    from spikebench.suites.compress import base_spec  # compress imports this module

    base, notes = base_spec(name, opts, "hybrid")
    base = replace(base, finetune_lr=HYBRID_FINETUNE_LR)  # the SNN stage's (ours)
    if opts.paper:
        base = replace(base, **HYBRID_PAPER)
    if is_residual(base.arch):
        raise ConfigError(f"compress-robust's hybrid training converts a BatchNorm-free ANN by "
                          f"threshold balancing, which folds each threshold into the next "
                          f"weight layer; {base.arch} has residual identity paths: choose a "
                          "VGG (vgg5-ref, vgg11-ref) or run compress-robust-scratch")
    steps = [opts.n_steps] if opts.n_steps else list(PAPER_STEPS if opts.paper
                                                     else HYBRID_STEPS)
    # on 2 cores a T=100 model costs 25x a T=4 one per pass: the CPU default fine-tunes it
    # one epoch and attacks its first RATE_ATTACK images (larger standard errors, stated)
    rate_budget = {} if opts.paper else {"epochs": 1, "n_attack": min(base.n_attack,
                                                                      RATE_ATTACK)}
    main_t = 8 if opts.paper and 8 in steps else (4 if 4 in steps else steps[0])
    specs = []
    for s in opts.seeds or [0]:
        specs += [replace(base, method=m, steps=t, seed=s) for t in steps
                  for m in ("standard", "hire", "agc", "hire+agc")]
        specs.append(replace(base, method="agc-unguided", steps=main_t, seed=s))
        specs += [replace(base, method="agc", steps=main_t, seed=s, density=d)
                  for d in SWEEP if d != base.density]
        specs.append(replace(base, method="standard", coding="bernoulli",
                             steps=opts.rate_steps or RATE_STEPS,
                             seed=s, threshold_scale=1.0, **rate_budget))
    return specs, notes
