"""Learning rules behind one interface, selected by name.

Adding a rule: write one file with a ``LearningRule`` subclass and register it here.
"""

from __future__ import annotations

from spikebench.learning_rules.base import (
    IGNORE,
    Learner,
    LearningRule,
    StepOutput,
    count_correct,
    decision_logits,
    evaluate_batch,
    objective,
)
from spikebench.learning_rules.bptt import BPTT
from spikebench.learning_rules.decolle import DECOLLE
from spikebench.learning_rules.drtp import DRTP
from spikebench.learning_rules.eprop import EProp
from spikebench.learning_rules.fptt import FPTT
from spikebench.learning_rules.ostl import OSTL
from spikebench.learning_rules.ottt import OTTT
from spikebench.learning_rules.sltt import SLTT
from spikebench.learning_rules.tbptt import TruncatedBPTT
from spikebench.registry import Registry

RULES: Registry[type[LearningRule]] = Registry("rule")
RULES.register("bptt", BPTT)
RULES.register("eprop", EProp)
RULES.register("decolle", DECOLLE)
RULES.register("tbptt", TruncatedBPTT)
RULES.register("ottt", OTTT)
RULES.register("sltt", SLTT)
RULES.register("drtp", DRTP)
RULES.register("ostl", OSTL)
RULES.register("fptt", FPTT)


def make_rule(name: str, **kwargs) -> LearningRule:
    """Instantiate the rule registered as ``name``; an unknown name lists the known ones."""
    return RULES.get(name)(**kwargs)


__all__ = [
    "IGNORE",
    "RULES",
    "BPTT",
    "DECOLLE",
    "DRTP",
    "OSTL",
    "OTTT",
    "SLTT",
    "TruncatedBPTT",
    "EProp",
    "FPTT",
    "Learner",
    "LearningRule",
    "StepOutput",
    "count_correct",
    "decision_logits",
    "evaluate_batch",
    "make_rule",
    "objective",
]
