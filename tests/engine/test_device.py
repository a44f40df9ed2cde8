"""Devices: the spec's device field, --device, and no tensor on an implicit device (every
rule's step runs with torch's default device set to "meta", where any tensor created
without an explicit device would fail to mix with the CPU ones)."""

from dataclasses import replace

import pytest
import torch

from spikebench.cli import main
from spikebench.engine import ExperimentSpec, load_trained, train_run
from spikebench.engine.train import evaluate, resolve_device
from spikebench.errors import ConfigError
from spikebench.learning_rules import make_rule
from spikebench.models import SpikingMLP
from spikebench.sparse import EventBatch
from tests.engine.test_harness import SPEC, toy_data

RULES = [("bptt", {}), ("bptt", {"fast": False}), ("eprop", {"chunk": 1}),
         ("eprop", {"chunk": 7, "carry": "trace"}), ("eprop", {"chunk": 7, "carry": "replay"}),
         ("decolle", {}), ("decolle", {"chunk": 1})]


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize(("rule", "options"), RULES)
def test_no_tensor_is_created_on_an_implicit_device(rule, options, recurrent):
    torch.manual_seed(0)
    model = SpikingMLP((20, 8, 6, 3), recurrent=recurrent, weight_scale=4.0)
    x = (torch.rand(30, 5, 20) < 0.3).float()
    y = torch.randint(0, 3, (5,))
    r = make_rule(rule, **options)
    r.prepare(model)
    for inp in (x, EventBatch.from_dense(x)):
        torch.set_default_device("meta")
        try:
            out = r.backward(model, inp, y)
        finally:
            torch.set_default_device("cpu")
        assert out.count == 5
        assert all(p.grad.device.type == "cpu" for p in model.parameters())


def test_spec_device_field_and_its_id():
    spec = ExperimentSpec(seed=1)
    assert spec.device == "cpu" and replace(spec, device="cpu").run_id == spec.run_id
    assert replace(spec, device="cuda").run_id != spec.run_id  # float outcomes differ
    assert ExperimentSpec.from_dict(replace(spec, device="cuda:1").to_dict()).device == "cuda:1"
    for bad in ("gpu", "auto", "cuda:x", ""):
        with pytest.raises(ConfigError, match="device"):
            ExperimentSpec(device=bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a CPU-only torch")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="sees no CUDA"):
        resolve_device("cuda")
    assert main(["run", "--device", "cuda", "--out", str(tmp_path / "out")]) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # checked before anything is made


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("rule", ["bptt", "eprop", "decolle"])
def test_training_on_cuda_and_the_checkpoint_loads_on_the_cpu(tmp_path, rule):
    train, test = toy_data(96, 0), toy_data(48, 1)
    spec = replace(SPEC, rule=rule, device="cuda", epochs=3)
    res = train_run(spec, tmp_path / "run", train, test, progress=False)
    assert res.status == "done"
    model, _, loaded = load_trained(tmp_path / "run")  # onto the CPU
    assert next(model.parameters()).device.type == "cpu" and loaded.device == "cuda"
    assert evaluate(model, test, loaded)["acc"] > 0.9
