"""The engine: what every run of every suite goes through.

- ``spec``: the spec base (versioned fields, stable run ids that cover the data) and
  ``ExperimentSpec``, the spec of a spiking-network run;
- ``executor``: the run folder (spec.json, metrics.json, checkpoint.pt, status.json, a
  lock), the one resumable ``fit`` loop, and the in-process executor;
- ``ray_executor``: the same runs as Ray tasks (local cluster on 127.0.0.1 or an address);
- ``train``: a spiking network's run (model, rule, optimiser) through ``fit``;
- ``data``: a spec's data, loaded once per process (poisoned where the spec says so);
- ``results``: the tidy results table and atomic writes.

Nothing here knows a suite, a study or a report.
"""

from spikebench.engine.spec import ExperimentSpec
from spikebench.engine.train import build_model, load_trained, train_run

__all__ = ["ExperimentSpec", "build_model", "load_trained", "train_run"]
