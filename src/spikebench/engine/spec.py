"""Experiment specs: one dataclass per run, with a stable id.

A run's id hashes every field that defines the experiment, the data included: for a data
set read from disk, its resolved folder and a fingerprint of its files (names, sizes,
modification times; ``DatasetInfo.identity``), so that runs on other data are never reused.
Fields added after runs were made are left out of the hash while they hold their empty
default, so those runs keep their ids (embedded data, clean runs).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from spikebench.checks import check_arguments, check_field_types  # noqa: F401 (re-exported)
from spikebench.errors import ConfigError
from spikebench.io import digest

ARCHS = ("ff", "rec")
DEVICE_NAME = re.compile(r"cpu|cuda(:\d+)?")
# The spec's schema. Version 1 hashes its fields in the flat form of spikebench 0.1, so
# runs made since then keep their ids; a change of what a field means bumps SCHEMA, and a
# SCHEMA above 1 enters the hash (every id changes, on purpose, and old run folders are
# named in the report as not reused).
SCHEMA = 1
# the sections of the nested form (spec.json, checkpoints): every field is in one of them
SECTIONS = {
    "data": ("dataset", "data_dir", "data_fingerprint", "n_steps", "dt_ms", "encoder",
             "frames", "n_train", "n_test"),
    "model": ("arch", "neuron", "hidden", "neuron_options", "alpha", "beta", "threshold",
              "reset", "surrogate", "slope", "kappa", "weight_scale", "rec_scale"),
    "training": ("rule", "rule_options", "seed", "epochs", "batch_size", "lr", "burn_in",
                 "loss", "device"),
    "extras": ("backdoor",),  # procedures on top of training (BadNets poisoning)
    "meta": ("suite",),
}
# a field that names the suite a run was made for, not what the run is: left out of the id
NOT_IN_ID = ("suite",)
# fields added after runs were made, with their defaults: they enter the id only when they
# differ from it, so those runs keep their ids. A new field must be added here (a test
# checks that every field is a schema-1 field or listed here).
ADDED_LATER: dict[str, Any] = {"backdoor": {}, "data_dir": None, "data_fingerprint": None,
                               "frames": "binary", "device": "cpu"}
SCHEMA_1_FIELDS = (
    "dataset", "arch", "neuron", "rule", "seed", "epochs", "batch_size", "lr", "n_steps",
    "dt_ms", "encoder", "hidden", "n_train", "n_test", "burn_in", "loss", "rule_options",
    "neuron_options", "alpha", "beta", "threshold", "reset", "surrogate", "slope", "kappa",
    "weight_scale", "rec_scale", "suite")


@dataclass(frozen=True)
class ExperimentSpec:
    """Everything that defines one training run."""

    dataset: str = "nmnist-sim"
    arch: str = "ff"  # "ff" or "rec" (explicit recurrent weights on hidden layers)
    neuron: str = "lif"
    rule: str = "bptt"
    seed: int = 0
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3  # Adam
    n_steps: int = 30  # time steps T
    dt_ms: float = 10.0  # bin width of event frames
    encoder: str = "bernoulli"  # static images -> spikes (see datasets.encoders)
    frames: str = "binary"  # event frames: binary, counts or normalised (datasets.nmnist)
    hidden: tuple[int, ...] = ()  # () = the data set's preset (N-MNIST: 120, 84)
    n_train: int | None = None  # None = all training samples
    n_test: int | None = None
    burn_in: int = 0
    loss: str = "step_ce"  # see spikebench.learning_rules.base.LOSSES
    rule_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"feedback": "random"}
    neuron_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"spike_fn": "GS"}
    # BadNets poisoning of the training data: {"source", "target", "rate"} (see
    # spikebench.datasets.poison.Backdoor; the spec's seed picks the poisoned samples)
    backdoor: dict[str, Any] = field(default_factory=dict)
    alpha: float = 0.8  # synaptic decay per step
    beta: float = 0.9  # membrane decay per step
    threshold: float = 1.0
    reset: str = "subtract"
    surrogate: str = "fast_sigmoid"
    slope: float = 5.0
    kappa: float = 0.9  # readout decay per step
    weight_scale: float = 3.0  # init gain of input weights W
    rec_scale: float = 1.0  # init gain of recurrent weights V
    suite: str = "default"
    data_dir: str | None = None  # the data set's folder (resolved; None: embedded data)
    data_fingerprint: str | None = None  # of the files in data_dir (DatasetInfo.identity)
    # where the run trains: "cpu", "cuda" or "cuda:N" (float outcomes differ between
    # devices, so a run's id covers it; "auto" is resolved by the command line)
    device: str = "cpu"

    def __post_init__(self) -> None:
        from spikebench.datasets import DATASETS
        from spikebench.learning_rules import RULES
        from spikebench.neurons import NEURONS

        check_field_types(self)
        rule = RULES.get(self.rule)
        if self.loss not in rule.losses:
            raise ConfigError(
                f"rule {self.rule!r} cannot train with loss {self.loss!r}; it supports: "
                f"{', '.join(rule.losses)}"
            )
        DATASETS.get(self.dataset)
        NEURONS.get(self.neuron)
        if rule.neurons is not None and self.neuron not in rule.neurons:
            raise ConfigError(
                f"rule {self.rule!r} cannot train neuron {self.neuron!r}; it trains: "
                f"{', '.join(rule.neurons)}"
            )
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown arch {self.arch!r}; known archs: {', '.join(ARCHS)}")
        from spikebench.datasets.nmnist import FRAMES

        if self.frames not in FRAMES:
            raise ConfigError(f"unknown frames {self.frames!r}; known: {', '.join(FRAMES)}")
        if self.frames != "binary" and DATASETS.get(self.dataset).preset != "nmnist":
            raise ConfigError(f"frames={self.frames!r} applies to event data (N-MNIST); "
                              f"{self.dataset!r} has no event frames")
        for name in ("epochs", "batch_size", "n_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_train", "n_test"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 (or None: all samples), got "
                                  f"{getattr(self, name)}")
        for name in ("lr", "dt_ms", "slope", "weight_scale", "threshold"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("rec_scale", "burn_in", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.kappa < 1:
            raise ConfigError(f"kappa (readout decay) must lie in [0, 1), got {self.kappa}")
        check_device(self.device)
        if self.burn_in >= self.n_steps:
            raise ConfigError(f"burn_in={self.burn_in} must be < n_steps={self.n_steps}")
        object.__setattr__(self, "hidden", tuple(self.hidden))
        bad = [h for h in self.hidden if isinstance(h, bool) or not isinstance(h, int) or h < 1]
        if bad:
            raise ConfigError(f"hidden layer sizes must be integers >= 1, got {list(self.hidden)}")
        object.__setattr__(self, "rule_options", dict(self.rule_options))
        object.__setattr__(self, "neuron_options", dict(self.neuron_options))
        object.__setattr__(self, "backdoor", dict(self.backdoor))
        if self.backdoor:
            from spikebench.datasets.poison import Backdoor

            try:
                Backdoor(**self.backdoor)
            except TypeError as err:
                raise ConfigError(f"bad backdoor settings {self.backdoor}: {err}") from None
        check_arguments(rule.__init__, self.rule_options, f"rule {self.rule!r}")
        try:  # unknown or bad options fail here, before any training
            rule(**self.rule_options)
        except TypeError as err:
            raise ConfigError(f"bad options for rule {self.rule!r}: {err}") from None
        self.neuron_params()

    def neuron_params(self):
        """The hidden layers' neuron parameters: the spec's LIF fields (alpha, beta, ...)
        that the neuron takes, overridden by ``neuron_options``."""
        from spikebench.neurons import NEURONS

        entry = NEURONS.get(self.neuron)
        common = {k: getattr(self, k) for k in entry.spec_fields}
        try:
            return entry.params(**{**common, **self.neuron_options})
        except TypeError as err:
            raise ConfigError(f"bad options for neuron {self.neuron!r}: {err}") from None

    def flat(self) -> dict:
        """Every field, flat (JSON-able)."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    def section(self, name: str) -> dict:
        """One section of the nested form: ``data``, ``model``, ``training``, ``extras``."""
        if name not in SECTIONS:
            raise ConfigError(f"unknown spec section {name!r}; known: {', '.join(SECTIONS)}")
        flat = self.flat()
        return {k: flat[k] for k in SECTIONS[name]}

    @property
    def data(self) -> dict:
        return self.section("data")

    @property
    def model(self) -> dict:
        return self.section("model")

    @property
    def training(self) -> dict:
        return self.section("training")

    def to_dict(self) -> dict:
        """The nested, versioned form written to spec.json and checkpoints:
        ``{"schema": 1, "data": {...}, "model": {...}, "training": {...}, "extras": {...},
        "suite": ...}``."""
        nested: dict[str, Any] = {"schema": SCHEMA}
        for name in ("data", "model", "training", "extras"):
            nested[name] = self.section(name)
        nested["suite"] = self.suite
        return nested

    @classmethod
    def from_dict(cls, d: dict) -> ExperimentSpec:
        """From the nested form (``to_dict``) or the flat one of spikebench 0.1."""
        if not isinstance(d, dict):
            raise ConfigError(f"a spec is a JSON object, got {type(d).__name__}")
        if "schema" in d:
            if not isinstance(d["schema"], int) or d["schema"] > SCHEMA:
                raise ConfigError(f"spec schema {d['schema']!r} is newer than this "
                                  f"spikebench's ({SCHEMA}); upgrade spikebench to read it")
            flat: dict[str, Any] = {"suite": d.get("suite", "default")}
            for name in ("data", "model", "training", "extras"):
                part = d.get(name, {})
                wrong = set(part) - set(SECTIONS[name])
                if wrong:
                    raise ConfigError(f"unknown fields in spec section {name!r}: "
                                      f"{sorted(wrong)}")
                flat.update(part)
        else:
            flat = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = set(flat) - known
        if unknown:
            raise ConfigError(f"unknown spec fields {sorted(unknown)}")
        if "hidden" in flat:
            flat["hidden"] = tuple(flat["hidden"])
        return cls(**flat)

    @property
    def run_id(self) -> str:
        """Readable prefix + hash of the schema and every field that defines the
        experiment (see SCHEMA and ADDED_LATER)."""
        core = {k: v for k, v in self.flat().items() if k not in NOT_IN_ID}
        for key, default in ADDED_LATER.items():
            if core.get(key, default) == default:
                core.pop(key, None)
        if SCHEMA > 1:
            core["schema"] = SCHEMA
        return f"{self.dataset}-{self.arch}-{self.rule}-s{self.seed}-{digest(core)}"

    def without_data_identity(self) -> ExperimentSpec:
        """This spec as spikebench 0.1 saw it (its id did not cover the data folder)."""
        from dataclasses import replace

        return replace(self, data_dir=None, data_fingerprint=None)


def with_data_identity(specs: list) -> list:
    """Each spec (any spec dataclass with ``dataset``, ``data_dir`` and ``data_fingerprint``)
    with the resolved folder and the fingerprint of the data it reads, so that its run id
    covers the data; computed once per data set and folder."""
    from dataclasses import replace

    from spikebench.datasets import DATASETS

    seen: dict[tuple, tuple] = {}
    out = []
    for spec in specs:
        key = (spec.dataset, spec.data_dir)
        if key not in seen:
            seen[key] = DATASETS.get(spec.dataset).identity(spec.data_dir)
        data_dir, fingerprint = seen[key]
        out.append(replace(spec, data_dir=data_dir, data_fingerprint=fingerprint))
    return out


def check_device(name: str) -> None:
    """A spec's device: 'cpu', 'cuda' or 'cuda:N' ("auto" is resolved by the command line)."""
    if not DEVICE_NAME.fullmatch(name):
        raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {name!r}")


def identity_core(spec, keys) -> dict:
    """What a conv or hybrid spec's run id hashes: ``keys``, training-time augmentation
    (crop and flip, cutout) where on, then its data folder and fingerprint where set and
    its device where it is not the CPU (so that CPU runs keep the ids they had before
    specs had a device; float outcomes differ between devices)."""
    core = {k: getattr(spec, k) for k in keys}
    if getattr(spec, "augment", False):  # added later: runs without it keep their ids
        core["augment"] = True
    if getattr(spec, "cutout", 0):
        core["cutout"] = spec.cutout
    for key in ("data_dir", "data_fingerprint"):
        if getattr(spec, key) is not None:
            core[key] = getattr(spec, key)
    if spec.device != "cpu":
        core["device"] = spec.device
    return core
