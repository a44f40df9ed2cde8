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
from spikebench.learning_rules.eprop import EProp
from spikebench.registry import Registry

RULES: Registry[type[LearningRule]] = Registry("rule")
RULES.register("bptt", BPTT)
RULES.register("eprop", EProp)
RULES.register("decolle", DECOLLE)


def make_rule(name: str, **kwargs) -> LearningRule:
    """Instantiate the rule registered as ``name``; an unknown name lists the known ones."""
    return RULES.get(name)(**kwargs)


__all__ = [
    "IGNORE",
    "RULES",
    "BPTT",
    "DECOLLE",
    "EProp",
    "Learner",
    "LearningRule",
    "StepOutput",
    "count_correct",
    "decision_logits",
    "evaluate_batch",
    "make_rule",
    "objective",
]
