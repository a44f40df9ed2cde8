"""The Ray executor on a local Ray cluster that the tests start themselves (2 CPUs, loopback
only, stopped at the end): the same results as in-process, a worker killed mid-run, a
driver killed mid-suite, failing runs, and the checks made before any run starts."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from spikebench.cli import main
from spikebench.engine.executor import InProcessExecutor, RunResult
from spikebench.errors import ConfigError
from spikebench.suites import SuiteOptions, run_suite
from tests.datasets.test_events import make_full_layout

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'spikebench[ray]')")

from spikebench.engine.ray_executor import (  # noqa: E402
    RayExecutor,
    make_executor,
    unshared_message,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    ex = RayExecutor(num_cpus=2, progress=False)
    ex.start()
    yield ex
    ex.close()


@pytest.fixture(scope="module")
def nmnist_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("nmnist")
    make_full_layout(root, per_class=4)
    return root


def opts(nmnist_dir, **kw):
    base = dict(data_dir=str(nmnist_dir), epochs=1, n_steps=5, batch_size=8,
                rules=["bptt", "decolle"], archs=["ff"], progress=False)
    return SuiteOptions(**{**base, **kw})


def test_local_cluster_listens_on_loopback_only(cluster):
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert [n["NodeManagerAddress"] for n in nodes] == ["127.0.0.1"]
    assert ray.cluster_resources()["CPU"] == 2


def test_same_results_as_in_process_bit_for_bit(tmp_path, nmnist_dir, cluster):
    # the fgsm suite: its runs and its per-model attacks are Ray tasks
    o = opts(nmnist_dir, n_eval=12)
    here = run_suite("fgsm", tmp_path / "here", o, executor=InProcessExecutor(1))
    there = run_suite("fgsm", tmp_path / "ray", o, executor=cluster)
    assert not any(r.skipped for r in there.runs)  # trained again, in the workers
    for name in ("results.csv", "fgsm.csv"):
        assert (tmp_path / "here" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes()
    assert [r.spec for r in here.runs] == [r.spec for r in there.runs]
    report = (tmp_path / "ray" / "report.md").read_text()
    assert "## FGSM (Table III)" in report
    assert (tmp_path / "ray" / "fgsm.png").stat().st_size > 0


def _kill_once_trained_one_epoch(run_dir: Path, killed: dict) -> None:
    """SIGKILL the process that trains ``run_dir`` once its first epoch is checkpointed."""
    deadline = time.time() + 120
    while time.time() < deadline:
        metrics = run_dir / "metrics.json"
        try:
            epochs = {m["epoch"] for m in json.loads(metrics.read_text())}
            holder = (run_dir / "lock").read_text().split()
        except (OSError, ValueError):
            time.sleep(0.02)
            continue
        # the records are written before the checkpoint (atomic): wait for both
        if epochs == {1} and (run_dir / "checkpoint.pt").exists() \
                and not (run_dir / "status.json").exists() and holder:
            pid = int(holder[0])
            assert pid != os.getpid()  # a Ray worker trains it, not this driver
            os.kill(pid, signal.SIGKILL)
            killed["pid"] = pid
            return
        time.sleep(0.02)


def test_killed_worker_is_retried_from_the_last_checkpoint(tmp_path, nmnist_dir, cluster):
    o = opts(nmnist_dir, epochs=3, rules=["bptt"], n_steps=100, batch_size=4)
    reference = run_suite("default", tmp_path / "here", o, executor=InProcessExecutor(1))
    run_id = reference.runs[0].spec.run_id
    killed: dict = {}
    watcher = threading.Thread(target=_kill_once_trained_one_epoch,
                               args=(tmp_path / "ray" / "runs" / run_id, killed))
    watcher.start()
    result = run_suite("default", tmp_path / "ray", o, executor=cluster)
    watcher.join()
    assert killed, "the worker was not killed mid-run (the run ended too soon?)"
    assert result.runs[0].status == "done"
    status = json.loads((tmp_path / "ray" / "runs" / run_id / "status.json").read_text())
    assert status["resumed_after"] == [1]  # retried, and resumed after epoch 1
    pid_after = int((tmp_path / "ray" / "runs" / run_id / "lock").read_text().split()[0])
    assert pid_after != killed["pid"]
    assert (tmp_path / "here" / "results.csv").read_bytes() == \
        (tmp_path / "ray" / "results.csv").read_bytes()


def test_failing_runs_are_reported_and_the_others_go_on(cluster, capsys):
    from spikebench.engine.spec import ExperimentSpec

    jobs = [ExperimentSpec(seed=s) for s in range(3)]

    def task(i, spec):  # defined here, so Ray ships it by value
        if i == 2:
            raise ConfigError(f"{spec.run_id}: bad data here")
        if i == 3:
            raise ZeroDivisionError("a bug")
        return RunResult(spec, "done", [{"epoch": 1, "metric": "test_acc", "value": 0.5}])

    seen = []
    results = cluster.run(jobs, task, lambda i, r: seen.append((i, r.status)))
    assert [r.status for r in results] == ["done", "failed", "failed"]
    assert sorted(seen) == [(1, "done"), (2, "failed"), (3, "failed")]
    assert results[1].message == f"{jobs[1].run_id}: bad data here"
    assert results[2].message == "ZeroDivisionError: a bug"
    err = capsys.readouterr().err  # our bug keeps its traceback
    assert "traceback" in err and 'raise ZeroDivisionError("a bug")' in err
    assert "\x1b[" not in err


def test_a_failing_analysis_raises_its_own_error_type(cluster):
    def analyse(x):
        if x == 2:
            raise ConfigError("no such layer")
        return x * 10

    assert cluster.map(analyse, [(1,), (3,)]) == [10, 30]
    with pytest.raises(ConfigError, match="no such layer"):
        cluster.map(analyse, [(1,), (2,)])


def _command(out: Path, nmnist_dir: Path) -> list[str]:
    return [sys.executable, "-m", "spikebench.cli", "run", "default", "--executor", "ray",
            "--data-dir", str(nmnist_dir), "--epochs", "5", "--steps", "100",
            "--batch-size", "4", "--rules", "bptt,decolle", "--archs", "ff",
            "--cpus-per-run", "1", "--out", str(out), "--no-progress"]


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_killed_driver_restarts_skipping_ended_runs(tmp_path, nmnist_dir):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    driver = subprocess.Popen(_command(out, nmnist_dir), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and driver.poll() is None:
        if any((out / "runs").glob("*/status.json")) or any((out / "runs").glob("*/checkpoint.pt")):
            break
        time.sleep(0.05)
    assert driver.poll() is None, driver.stderr.read().decode()
    its_cluster = _descendants(driver.pid)  # its local Ray cluster: GCS, raylet, workers
    assert its_cluster
    driver.send_signal(signal.SIGKILL)  # the driver only: the rest must stop by itself
    driver.wait()
    ended_before = {p.parent.name for p in (out / "runs").glob("*/status.json")}
    started = {p.parent.name for p in (out / "runs").glob("*/checkpoint.pt")}
    assert started and not (out / "report.md").exists()

    again = subprocess.run(_command(out, nmnist_dir), env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    df = pd.read_csv(out / "results.csv")
    assert set(df.status) == {"done"} and df.run_id.nunique() == 2
    for run_id in ended_before:  # ended before the kill: skipped, not retrained
        assert json.loads((out / "runs" / run_id / "status.json").read_text())[
            "resumed_after"] == []
    reference = run_suite("default", tmp_path / "here",
                          SuiteOptions(data_dir=str(nmnist_dir), epochs=5, n_steps=100,
                                       batch_size=4, rules=["bptt", "decolle"], archs=["ff"],
                                       progress=False), executor=InProcessExecutor(1))
    assert (tmp_path / "here" / "results.csv").read_bytes() == (out / "results.csv").read_bytes()
    assert len(reference.runs) == 2
    deadline = time.time() + 150  # Ray's agents notice their raylet is gone within ~75 s
    while time.time() < deadline and any(_alive(p) for p in its_cluster):
        time.sleep(1)
    assert not [p for p in its_cluster if _alive(p)], "the killed driver's Ray processes live on"


def test_runs_folder_every_node_must_see(tmp_path, cluster):
    cluster.prepare(tmp_path / "runs")  # one node, one file system: accepted
    assert not list((tmp_path / "runs").iterdir())  # the probe file is removed
    answers = [("a" * 16, "head", "tok"), ("b" * 16, "worker-2", None)]
    message = unshared_message(tmp_path, answers, "tok")
    assert "worker-2 (bbbbbbbb) cannot see it" in message and "--runs" in message
    assert unshared_message(tmp_path, answers[:1], "tok") is None


def test_requests_the_cluster_cannot_meet_are_refused(cluster):
    with pytest.raises(ConfigError, match="--gpus-per-run 1: the Ray cluster has 0 GPU"):
        RayExecutor(gpus_per_run=1).check_fits(ray.cluster_resources())
    with pytest.raises(ConfigError, match="--cpus-per-run 4: the Ray cluster has 2 CPU"):
        RayExecutor(cpus_per_run=4).check_fits(ray.cluster_resources())
    with pytest.raises(ConfigError, match="--cpus-per-run must be"):
        RayExecutor(cpus_per_run=0)
    with pytest.raises(ConfigError, match="--address is an option of --executor ray"):
        make_executor("in-process", address="10.0.0.1:6379")


def test_command_line_errors_are_one_line(tmp_path, capsys):
    assert main(["run", "--address", "1.2.3.4:6379", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--executor ray" in err
    assert not (tmp_path / "o").exists()
