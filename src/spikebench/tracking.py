"""Experiment tracking (``spikebench run --log tensorboard|mlflow``): as each run of a suite
ends, its per-epoch metrics (step = epoch) and its spec (as parameters) go to a local
TensorBoard log folder or MLflow file store; at the suite's end its plots (and, for MLflow,
the report) go along as artefacts. No server is started or contacted.

- TensorBoard: ``LOG_DIR/<suite>/<run_id>/`` per run (scalars, the spec as hparams and as
  text), ``LOG_DIR/<suite>/suite/`` for the plots (images). Open with
  ``tensorboard --logdir LOG_DIR``.
- MLflow: the file store ``LOG_DIR`` (``file:`` URI; MLflow 3 keeps it in maintenance mode,
  so ``MLFLOW_ALLOW_FILE_STORE`` is set for it), one experiment per suite, a run per
  spikebench run (named by its run id, tagged with it), a ``suite`` run with the report and
  the plots. Open with ``mlflow ui --backend-store-uri file:LOG_DIR``.

Nothing is logged twice: ``LOG_DIR/.spikebench-logged.json`` keeps a digest of what was
logged per run (and of the suite's results and plots), a rerun whose results are unchanged
logs nothing new, and one whose results changed (a resumed run with more epochs) is logged
again as a new entry, said on the command line. The packages are extras:
``pip install 'spikebench[tracking]'``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path

from spikebench.errors import ConfigError
from spikebench.io import digest, write_json

log = logging.getLogger(__name__)

TRACKERS = ("tensorboard", "mlflow")
LEDGER = ".spikebench-logged.json"
INSTALL = ("pip install 'spikebench[tracking]' -c constraints.txt (the constraints keep "
           "this machine's torch)")


def flat_params(spec) -> dict[str, object]:
    """A spec as flat parameters: nested dicts as ``key.sub``, lists and None as text."""
    raw = spec.to_dict() if hasattr(spec, "to_dict") else (
        asdict(spec) if is_dataclass(spec) else dict(vars(spec)))
    out: dict[str, object] = {}

    def put(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                put(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, bool | int | float | str):
            out[prefix] = value
        else:
            out[prefix] = json.dumps(value, default=str)
    put("", raw)
    return out


class Tracker:
    """Logs a suite's runs and plots to one tracking backend (module doc)."""

    def __init__(self, kind: str, root: str | Path, suite: str) -> None:
        if kind not in TRACKERS:
            raise ConfigError(f"unknown tracker {kind!r}; known: {', '.join(TRACKERS)}")
        self.kind, self.root, self.suite = kind, Path(root).absolute(), suite
        try:
            if kind == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter  # noqa: F401
            else:
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
                import mlflow  # noqa: F401
        except ImportError:
            raise ConfigError(f"--log {kind} needs {kind}, which is not installed: "
                              f"{INSTALL}") from None
        self.root.mkdir(parents=True, exist_ok=True)
        ledger = self.root / LEDGER
        self.logged: dict = json.loads(ledger.read_text()) if ledger.is_file() else {}
        self.new = self.again = 0

    def _key(self, run_id: str) -> str:
        return f"{self.kind}/{self.suite}/{run_id}"

    def log_run(self, result) -> None:
        """One ended run: its metrics per epoch, its spec, its status."""
        run_id = result.spec.run_id
        metrics = [m for m in result.metrics if isinstance(m.get("value"), int | float)]
        stamp = digest([result.status, metrics])
        key = self._key(run_id)
        if self.logged.get(key) == stamp:
            return
        self.again += key in self.logged
        self.new += key not in self.logged
        params = flat_params(result.spec)
        if self.kind == "tensorboard":
            self._tensorboard_run(run_id, stamp, params, metrics, result.status)
        else:
            self._mlflow_run(run_id, stamp, params, metrics, result.status)
        self._remember(key, stamp)

    def _remember(self, key: str, stamp: str) -> None:
        self.logged[key] = stamp
        write_json(self.root / LEDGER, self.logged)

    def _mlflow(self):
        """``mlflow`` pointed at this store and the suite's experiment."""
        import mlflow

        mlflow.set_tracking_uri(self.root.as_uri())
        mlflow.set_experiment(self.suite)
        return mlflow

    def _tensorboard_run(self, run_id, stamp, params, metrics, status) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = self.root / self.suite / run_id
        if folder.exists():  # logged before with other results: a new entry beside it
            folder = self.root / self.suite / f"{run_id}-{stamp}"
        with SummaryWriter(str(folder)) as w:
            for m in metrics:
                w.add_scalar(m["metric"], m["value"], m["epoch"])
            last = max((m["epoch"] for m in metrics), default=0)
            final = {f"final/{m['metric']}": m["value"] for m in metrics if m["epoch"] == last}
            w.add_hparams(params, final or {"final/none": 0.0}, run_name=".")
            w.add_text("spec", f"```\n{json.dumps(params, indent=1)}\n```\nstatus: {status}")

    def _mlflow_run(self, run_id, stamp, params, metrics, status) -> None:
        mlflow = self._mlflow()
        with mlflow.start_run(run_name=run_id, tags={"spikebench.run_id": run_id,
                                                     "spikebench.digest": stamp,
                                                     "spikebench.status": status}):
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            for m in metrics:
                mlflow.log_metric(m["metric"], float(m["value"]), step=int(m["epoch"]))

    def log_outputs(self, out_dir: Path) -> None:
        """The suite's plots (and the MLflow report) as artefacts of a ``suite`` entry."""
        files = sorted(Path(out_dir).glob("*.png"))
        report = Path(out_dir) / "report.md"
        key = self._key("suite")
        results = Path(out_dir) / "results.csv"
        # what the outputs show (the report restates its wall time at every invocation)
        stamp = digest([[f.name, hashlib.sha256(f.read_bytes()).hexdigest()]
                        for f in [*files, results] if f.is_file()])
        if self.logged.get(key) == stamp:
            return
        if self.kind == "tensorboard":
            import matplotlib.image as mpimg
            from torch.utils.tensorboard import SummaryWriter

            with SummaryWriter(str(self.root / self.suite / "suite")) as w:
                for f in files:
                    w.add_image(f.stem, mpimg.imread(f)[..., :3], dataformats="HWC")
                if report.is_file():
                    w.add_text("report", report.read_text())
        else:
            mlflow = self._mlflow()
            with mlflow.start_run(run_name="suite", tags={"spikebench.suite": self.suite}):
                for f in [*files, report]:
                    if f.is_file():
                        mlflow.log_artifact(str(f))
        self._remember(key, stamp)

    def summary(self) -> str:
        return (f"{self.kind}: {self.new} run(s) logged to {self.root}"
                + (f", {self.again} logged again with changed results" if self.again else ""))
