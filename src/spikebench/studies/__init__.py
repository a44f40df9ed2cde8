"""Studies: analyses that a suite runs on its trained models after training.

A study is one file here with a function ``(StudyContext) -> StudyOutput``: what it needs
from each trained model (computed by ``spikebench.analysis``, cached per model in the run's
folder under a key of the study's name, version and parameters: ``RUN/analysis/<study>-
<hash>.json``, written atomically, so an interrupted study resumes and a rerun costs
nothing), then its tidy tables (``OUT/<name>.csv``), Markdown sections for ``report.md``,
PNGs and findings. Adding a study: one file plus one line below; the conformance tests
run every registered study. A study reaches a run's trained models, whatever the suite
kind, through ``StudyContext.trained`` (``TrainedModel``: identifying columns, a ``Probed``
model, test samples); one that needs more of a spiking MLP's run sets ``mlp_only``.
"""

from __future__ import annotations

from collections.abc import Callable

from spikebench.registry import Registry
from spikebench.studies.backdoor import backdoor_study
from spikebench.studies.base import StudyContext, StudyOutput, cached
from spikebench.studies.cka import cka_study
from spikebench.studies.fgsm import fgsm_study
from spikebench.studies.fidelity import fidelity_study
from spikebench.studies.fisher import fisher_study
from spikebench.studies.frontier import frontier_study
from spikebench.studies.transfer import transfer_study

# these analyse spiking MLPs trained by a rule (their data set, decision and ANN
# counterpart); the others take any suite kind's trained models (StudyContext.trained)
for _study in (fgsm_study, backdoor_study, fidelity_study, frontier_study):
    _study.mlp_only = True
# the frontier times one training-sized batch; --n-eval (test samples analysed) is not its
frontier_study.uses_n_eval = False

STUDIES: Registry[Callable[[StudyContext], StudyOutput]] = Registry("study")
STUDIES.register("fgsm", fgsm_study)
STUDIES.register("fisher", fisher_study)
STUDIES.register("cka", cka_study)
STUDIES.register("backdoor", backdoor_study)
STUDIES.register("fidelity", fidelity_study)
STUDIES.register("transfer", transfer_study)
STUDIES.register("frontier", frontier_study)

__all__ = ["STUDIES", "StudyContext", "StudyOutput", "cached"]
