"""Ray executor: every run of a suite, and every per-model analysis of its studies, is a Ray
task; the driver (this process) collects the results and writes the same ``results.csv``,
report and PNGs as the in-process executor.

- Without an address, Ray starts a local cluster for this command only: all cores of this
  machine, no dashboard, every server on 127.0.0.1, stopped when the command ends (Ray's own
  reaper stops it if the driver is killed). With ``address`` the driver joins a running
  cluster (``ray start --head`` on one machine, ``ray start --address=HEAD:6379`` on the
  others; see the README).
- Same results: each task pins torch to ``cpus_per_run`` threads, and a run's seeds and
  data order depend on its spec only, so a run trains bit for bit as it does in this process
  with the same threads (``--cpus-per-run`` pins the in-process executor too).
- Runs write into the runs folder, which on a cluster must be one shared path (NFS or the
  like): ``prepare`` checks, before any run starts, that every node sees it.
- Faults: a task whose worker dies (SIGKILL, a lost node) is retried (``max_retries``) and
  the run resumes from its last checkpoint; a driver killed and started again skips the runs
  that ended and resumes the others; a run that fails (bad data, a bug) is reported as
  failed, with its message (and, for a bug, the traceback, on stderr), and the others go on.

Ray is an extra (``pip install 'spikebench[ray]'``), imported only when a Ray executor starts.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spikebench.engine.executor import RunResult, torch_threads
from spikebench.errors import ConfigError, SpikebenchError
from spikebench.progress import progress_line

log = logging.getLogger(__name__)

INSTALL = ("pip install 'spikebench[ray]' -c constraints.txt (the constraints keep this "
           "machine's torch)")
POLL_S = 2.0  # how often the driver looks at the grid while it waits


def import_ray(local: bool):
    """``ray``, set up so that a local cluster listens on 127.0.0.1 only. Ray binds its
    servers to the node's address; its switch ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes
    a local node's address the loopback one (the child processes read it from the
    environment, the driver from ``ray_constants``)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves this machine
    if local:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        import ray
        from ray._private import ray_constants
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {INSTALL}"
                          ) from None
    if local:
        ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


def _run_task(task: Callable, index: int, job, threads: int, tracker) -> RunResult:
    tracker.started.remote(index)  # for the grid's progress line
    with torch_threads(threads):
        return task(index, job)


def _map_task(fn: Callable, item: tuple, threads: int):
    with torch_threads(threads):
        return fn(*item)


def _probe(path: str) -> tuple[str, str | None]:
    """(this host, the text of ``path`` as this node sees it, None if it cannot)."""
    try:
        return socket.gethostname(), Path(path).read_text()
    except OSError:
        return socket.gethostname(), None


class _Tracker:
    """Which tasks have started (a Ray actor; tasks tell it when they start)."""

    def __init__(self) -> None:
        self.indices: set[int] = set()

    def started(self, index: int) -> None:
        self.indices.add(index)

    def started_ones(self) -> set[int]:
        return set(self.indices)


def unshared_message(path: Path, answers: list[tuple[str, str, str | None]], token: str,
                     flag: str = "--runs") -> str | None:
    """None if every node (node id, host, what it read) saw ``token`` at ``path``, else
    the error that names the nodes that did not."""
    blind = [f"{host} ({node[:8]})" for node, host, text in answers if text != token]
    if not blind:
        return None
    return (f"{flag} {path} is not shared with every machine of the Ray cluster: "
            f"{', '.join(blind)} cannot see it; runs are written there, so on a cluster it "
            "must be one folder every machine mounts at the same path (e.g. NFS); choose "
            f"such a folder with {flag}")


class RayExecutor:
    """Runs a suite's runs and its studies' per-model analyses as Ray tasks."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_run: int = 1,
                 gpus_per_run: float = 0, progress: bool = True, num_cpus: int | None = None,
                 max_retries: int = 3) -> None:
        if isinstance(cpus_per_run, bool) or not isinstance(cpus_per_run, int) \
                or cpus_per_run < 1:
            raise ConfigError(f"--cpus-per-run must be a whole number >= 1, got {cpus_per_run!r}")
        if isinstance(gpus_per_run, bool) or not isinstance(gpus_per_run, int | float) \
                or not 0 <= gpus_per_run < float("inf"):
            raise ConfigError(f"--gpus-per-run must be a finite number >= 0, got "
                              f"{gpus_per_run!r}")
        self.address, self.cpus_per_run, self.gpus_per_run = address, cpus_per_run, gpus_per_run
        self.progress, self.num_cpus, self.max_retries = progress, num_cpus, max_retries
        self._ray = None
        self._own_cluster = False

    # -- the cluster ----------------------------------------------------------------
    def start(self):
        """Start (or join) the cluster once; check that a run fits on it."""
        if self._ray is not None:
            return self._ray
        if self.address is not None:
            check_address(self.address)  # before Ray, whose own wait is minutes and silent
        ray = import_ray(local=self.address is None)
        if ray.is_initialized():
            raise ConfigError("Ray is already initialised in this process; the Ray executor "
                              "starts (or joins) its own cluster")
        common = {"include_dashboard": False, "log_to_driver": False,
                  "logging_level": logging.WARNING}
        term = signal.getsignal(signal.SIGTERM)  # ray.init may take SIGTERM over
        try:
            if self.address is None:
                ray.init(address="local", num_cpus=self.num_cpus or os.cpu_count(), **common)
                self._own_cluster = True
            else:
                ray.init(address=self.address, **common)
            if term is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, term)  # the command's own: end cleanly
        except (ConnectionError, ValueError, RuntimeError) as err:
            if self.address is None:
                raise
            raise ConfigError(
                f"--address {self.address}: cannot join a Ray cluster there "
                f"({str(err).splitlines()[0][:200]}); start one with `ray start --head` and "
                "pass the address it prints") from None
        self._ray = ray
        if self._own_cluster:
            hosts = {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
            if hosts != {"127.0.0.1"}:  # our bug (or Ray's): never serve on the network
                self.close()
                raise RuntimeError(f"the local Ray cluster is not on loopback only: {hosts}")
        try:
            self.check_fits(ray.cluster_resources())
        except ConfigError:
            self.close()
            raise
        return ray

    def check_fits(self, total: dict[str, float]) -> None:
        """A run that asks for more CPUs or GPUs than the cluster has would wait forever:
        refused instead."""
        for what, need, flag in (("CPU", self.cpus_per_run, "--cpus-per-run"),
                                 ("GPU", self.gpus_per_run, "--gpus-per-run")):
            if need and total.get(what, 0) < need:
                raise ConfigError(
                    f"{flag} {need:g}: the Ray cluster has {total.get(what, 0):g} {what}(s) "
                    f"in all, so no run could start; lower {flag} or add machines")

    def close(self) -> None:
        """Leave the cluster; a local one stops."""
        if self._ray is not None:
            self._ray.shutdown()
            self._ray = None

    def _options(self) -> dict:
        return {"num_cpus": self.cpus_per_run, "num_gpus": self.gpus_per_run,
                "max_retries": self.max_retries}

    def prepare(self, runs_dir: Path) -> None:
        """Refuse a runs folder that some node of the cluster cannot see."""
        ray = self.start()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        runs_dir = Path(runs_dir).absolute()
        runs_dir.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        probe_path = runs_dir / f".spikebench-shared-{token}"
        probe_path.write_text(token)
        try:
            probe = ray.remote(_probe)
            nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
            refs = [probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
                node, soft=False)).remote(str(probe_path)) for node in nodes]
            answers = [(node, *ray.get(ref)) for node, ref in zip(nodes, refs, strict=True)]
        finally:
            probe_path.unlink(missing_ok=True)
        message = unshared_message(runs_dir, answers, token)
        if message:
            raise ConfigError(message)

    # -- the work -------------------------------------------------------------------
    def run(self, jobs: Sequence[Any], task: Callable[[int, Any], RunResult],
            after_each: Callable[[int, RunResult], None] | None = None) -> list[RunResult]:
        """``task(i, job)`` of every job as a Ray task; ``after_each(i, result)`` on the
        driver as each ends (in the order they end)."""
        ray = self.start()
        tracker = ray.remote(_Tracker).options(num_cpus=0).remote()
        remote = ray.remote(_run_task).options(**self._options())
        task_ref = ray.put(task)
        pending = {remote.remote(task_ref, i, job, self.cpus_per_run, tracker): i
                   for i, job in enumerate(jobs, 1)}
        results: dict[int, RunResult] = {}
        t0, shown = time.perf_counter(), None
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_S)
            for ref in ready:
                i = pending.pop(ref)
                results[i] = self._result(ray, ref, jobs[i - 1])
                if after_each is not None:
                    after_each(i, results[i])
            state = self._grid_state(ray, tracker, results, pending, len(jobs))
            if state != shown:
                shown = state
                progress_line(f"grid: {state} ({time.perf_counter() - t0:.0f} s)",
                              self.progress)
        ray.kill(tracker)
        return [results[i] for i in sorted(results)]

    def map(self, fn: Callable[..., Any], items: Sequence[tuple], label: str = "",
            progress: bool = True) -> list:
        """``fn(*item)`` of every item as a Ray task, the results in the items' order; an
        error in one is raised here (Ray's error is also of the original error's type)."""
        if not items:
            return []
        ray = self.start()
        remote = ray.remote(_map_task).options(**self._options())
        fn_ref = ray.put(fn)
        refs = [remote.remote(fn_ref, item, self.cpus_per_run) for item in items]
        left = list(refs)
        while left:
            ready, left = ray.wait(left, num_returns=len(left), timeout=POLL_S)
            if ready:
                progress_line(f"{label}: {len(refs) - len(left)}/{len(refs)} done",
                              self.progress and progress and bool(label))
        return ray.get(refs)

    def _result(self, ray, ref, job) -> RunResult:
        """The task's RunResult, or a failed one that says why."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            cause = err.cause if getattr(err, "cause", None) is not None else err
            if isinstance(cause, SpikebenchError):
                message = " ".join(str(cause).split())
            else:  # our bug: its remote traceback goes to stderr
                remote = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # without Ray's colours
                sys.stderr.write(f"spikebench: run {job.run_id} raised an error; traceback (in "
                                 f"the Ray worker):\n{remote}\n")
                message = f"{type(cause).__name__}: {str(cause).splitlines()[0][:300]}"
        except ray.exceptions.RayError as err:  # the worker died more often than retried
            message = (f"its worker died {self.max_retries + 1} times "
                       f"({type(err).__name__}); rerun to resume it from its last checkpoint")
        log.error("%s failed: %s", job.run_id, message)
        return RunResult(job, "failed", [], message)

    @staticmethod
    def _grid_state(ray, tracker, results, pending, total: int) -> str:
        failed = sum(r.status == "failed" for r in results.values())
        started = ray.get(tracker.started_ones.remote())
        running = sum(1 for i in pending.values() if i in started)
        return (f"{len(results) - failed}/{total} ended, {running} running, "
                f"{len(pending) - running} waiting, {failed} failed")


CONNECT_S = 10.0  # how long check_address waits for the head node to answer


def check_address(address: str) -> None:
    """A cluster address given as HOST:PORT must answer a TCP connection within
    ``CONNECT_S`` seconds (Ray itself retries for minutes, printing only its own lines);
    ``auto`` and ``ray://`` addresses are left to Ray."""
    if address == "auto" or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--address {address!r}: expected HOST:PORT (the address `ray start "
                          "--head` prints, e.g. 127.0.0.1:6379), auto or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_S):
            pass
    except OSError as err:
        raise ConfigError(f"--address {address}: no Ray cluster answers there "
                          f"({err.strerror or err}); start one with `ray start --head` and "
                          "pass the address it prints") from None


def make_executor(kind: str, address: str | None = None, cpus_per_run: int | None = None,
                  gpus_per_run: float | None = None, progress: bool = True):
    """The executor the command line asks for (``in-process`` or ``ray``)."""
    from spikebench.engine.executor import InProcessExecutor

    if kind == "in-process":
        extra = [flag for flag, v in (("--address", address), ("--gpus-per-run", gpus_per_run))
                 if v is not None]
        if extra:
            raise ConfigError(f"{', '.join(extra)} is an option of --executor ray; add "
                              "--executor ray or drop it")
        if cpus_per_run is not None and cpus_per_run < 1:
            raise ConfigError(f"--cpus-per-run must be >= 1, got {cpus_per_run}")
        return InProcessExecutor(cpus_per_run)
    if kind == "ray":
        import_ray(local=address is None)  # not installed: said before any folder is made
        # validated before Ray is imported or any cluster starts (0 is refused, not made 1)
        return RayExecutor(address, 1 if cpus_per_run is None else cpus_per_run,
                           0 if gpus_per_run is None else gpus_per_run, progress)
    raise ConfigError(f"unknown executor {kind!r}; known: in-process, ray")
