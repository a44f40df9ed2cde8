"""Experiment specs: one dataclass per run, with a stable id."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from spikebench.io import digest

ARCHS = ("ff", "rec")
# fields that say where things are, not what the experiment is: left out of the id
NOT_IN_ID = ("suite", "data_dir")


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
    hidden: tuple[int, ...] = ()  # () = the data set's preset (N-MNIST: 120, 84)
    n_train: int | None = None  # None = all training samples
    n_test: int | None = None
    burn_in: int = 0
    loss: str = "step_ce"  # see spikebench.learning_rules.base.LOSSES
    rule_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"feedback": "random"}
    neuron_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"spike_fn": "GS"}
    # BadNets poisoning of the training data: {"source", "target", "rate"} (see
    # spikebench.analysis.backdoor.Backdoor; the spec's seed picks the poisoned samples)
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
    data_dir: str | None = None

    def __post_init__(self) -> None:
        from spikebench.datasets import DATASETS
        from spikebench.learning_rules import RULES
        from spikebench.neurons import NEURONS

        rule = RULES.get(self.rule)
        if self.loss not in rule.losses:
            raise ValueError(
                f"rule {self.rule!r} cannot train with loss {self.loss!r}; it supports: "
                f"{', '.join(rule.losses)}"
            )
        DATASETS.get(self.dataset)
        NEURONS.get(self.neuron)
        if rule.neurons is not None and self.neuron not in rule.neurons:
            raise ValueError(
                f"rule {self.rule!r} cannot train neuron {self.neuron!r}; it trains: "
                f"{', '.join(rule.neurons)}"
            )
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; known archs: {', '.join(ARCHS)}")
        for name in ("epochs", "batch_size", "n_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.dt_ms <= 0:
            raise ValueError("lr and dt_ms must be positive")
        if self.burn_in >= self.n_steps:
            raise ValueError(f"burn_in={self.burn_in} must be < n_steps={self.n_steps}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "rule_options", dict(self.rule_options))
        object.__setattr__(self, "neuron_options", dict(self.neuron_options))
        object.__setattr__(self, "backdoor", dict(self.backdoor))
        if self.backdoor:
            from spikebench.analysis.backdoor import Backdoor

            try:
                Backdoor(**self.backdoor)
            except TypeError as err:
                raise ValueError(f"bad backdoor settings {self.backdoor}: {err}") from None
        try:  # unknown or bad options fail here, before any training
            rule(**self.rule_options)
        except TypeError as err:
            raise ValueError(f"bad options for rule {self.rule!r}: {err}") from None
        try:
            NEURONS.get(self.neuron)[1](**self.neuron_options)
        except TypeError as err:
            raise ValueError(f"bad options for neuron {self.neuron!r}: {err}") from None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ExperimentSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown spec fields {sorted(unknown)}")
        d = dict(d)
        if "hidden" in d:
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)

    @property
    def run_id(self) -> str:
        """Readable prefix + hash of every field that defines the experiment."""
        core = {k: v for k, v in self.to_dict().items() if k not in NOT_IN_ID}
        if not core["backdoor"]:  # added later: clean runs keep the ids they had
            del core["backdoor"]
        return f"{self.dataset}-{self.arch}-{self.rule}-s{self.seed}-{digest(core)}"
