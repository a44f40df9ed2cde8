"""NIR export and import (spikebench.nir_io): a round trip gives the same outputs bit for
bit; norse's own NIR importer runs our exported FF network with the same spikes step by
step (zero reset, the reset NIR's CubaLIF and norse model); what NIR cannot hold is refused."""

from dataclasses import replace

import nir
import pytest
import torch

from spikebench.cli import main
from spikebench.engine import load_trained, train_run
from spikebench.errors import ConfigError
from spikebench.models import SpikingMLP
from spikebench.neurons import LIFParams, ParaLIFParams
from spikebench.nir_io import from_nir, read_nir, to_nir, write_nir
from tests.engine.test_harness import SPEC, toy_data


def model(recurrent, reset="subtract", params=None, seed=0):
    torch.manual_seed(seed)
    params = params or LIFParams(alpha=0.8, beta=0.9, threshold=0.5, reset=reset)
    return SpikingMLP((20, 8, 6, 3), recurrent=recurrent, weight_scale=4.0, rec_scale=2.0,
                      params=params, kappa=0.85)


def events(steps=60, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, 5, 20, generator=g) < 0.3).float()


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("recurrent", [False, True])
def test_round_trip_gives_the_same_outputs_bit_for_bit(tmp_path, recurrent, reset):
    m = model(recurrent, reset)
    write_nir(m, tmp_path / "m.nir")
    back = read_nir(tmp_path / "m.nir")
    x = events()
    out, spikes = m(x, record=True)
    out_back, spikes_back = back(x, record=True)
    assert torch.equal(out, out_back)
    assert all(torch.equal(a, b) for a, b in zip(spikes, spikes_back, strict=True))
    assert float(spikes[0].detach().mean()) > 0.02
    graph = nir.read(tmp_path / "m.nir")
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds["lif0"] == "CubaLIF" and kinds["readout"] == "LI"
    assert ("rec0", "lif0") in graph.edges if recurrent else "rec0" not in kinds


@pytest.mark.parametrize("params", [
    LIFParams(alpha=0.8, beta=0.9, threshold=0.5, reset="zero"),
    LIFParams.from_time_constants(5e-3, 1e-2, 1e-3, threshold=0.1, reset="zero"),
])
def test_norse_runs_our_exported_network_with_the_same_spikes(params):
    """norse.torch.from_nir builds the net from our NIR graph (it drops the LI readout, so
    its output is the readout's drive W s[t] + b); the spikes of the last hidden layer,
    seen through that drive, equal ours at every step of 300."""
    import norse.torch as norse_torch

    m = model(False, params=params)
    if params.gain < 0.5:  # norse's constants: a smaller drive, a larger weight scale
        with torch.no_grad():
            for layer in m.hidden:
                layer.weight.mul_(8.0)
    x = events(steps=300)
    imported = norse_torch.from_nir(to_nir(m, dt=1e-3), dt=1e-3)
    state, outs = None, []
    for x_t in x:
        out, state = imported(x_t, state)
        outs.append(out)
    _, spikes = m(x, record=True)
    ours = torch.nn.functional.linear(spikes[-1], m.readout.weight, m.readout.bias)
    assert 0.01 < float(spikes[-1].mean()) < 0.9  # neither silent nor saturated
    assert torch.equal(torch.stack(outs), ours)


def test_a_graph_from_elsewhere_is_imported_from_its_continuous_constants():
    m = model(False, "zero")
    graph = to_nir(m, dt=1e-3)
    foreign = nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata={})
    back = from_nir(foreign, dt=1e-3)
    assert back.hidden[0].params.reset == "zero"
    assert back.hidden[0].params.alpha == pytest.approx(0.8, rel=1e-6)
    x = events()
    torch.testing.assert_close(back(x), m(x), rtol=1e-4, atol=1e-4)


def test_what_nir_cannot_hold_is_refused():
    para = SpikingMLP((20, 8, 3), neuron="paralif", params=ParaLIFParams())
    with pytest.raises(ConfigError, match="ParaLIF"):
        to_nir(para)
    with pytest.raises(ConfigError, match="SpikingMLP"):
        to_nir(torch.nn.Linear(3, 2))
    with pytest.raises(ConfigError, match="time constants"):
        to_nir(model(False, params=LIFParams(alpha=1.0, beta=0.9)))


def test_export_command(tmp_path, capsys):
    train, test = toy_data(64, 0), toy_data(32, 1)
    run = tmp_path / "run"
    assert train_run(replace(SPEC, epochs=1, arch="rec"), run, train, test,
                     progress=False).status == "done"
    assert main(["export", str(run), str(tmp_path / "m.nir")]) == 0
    assert "subtractive reset" in capsys.readouterr().out
    trained, _, _ = load_trained(run)
    x = test.x[:4].float().reshape(4, 8, -1).transpose(0, 1)
    assert torch.equal(read_nir(tmp_path / "m.nir")(x), trained(x))
    assert main(["export", str(tmp_path / "nothing"), str(tmp_path / "x.nir")]) == 2
    assert "no checkpoint.pt" in capsys.readouterr().err
    (tmp_path / "bad.nir").write_text("not hdf5")
    with pytest.raises(ConfigError, match="not a readable NIR file"):
        read_nir(tmp_path / "bad.nir")
