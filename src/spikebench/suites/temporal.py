"""The community's temporal benchmarks on the locality grid: every registered rule x FF/REC
on the Heidelberg spiking data sets (SHD, SSC) and DVS Gesture, with the locality frontier.
The data are the user's (``spikebench data`` says how to obtain each); binning as the field
does it, stated in each report's *What ran*."""

from __future__ import annotations

from spikebench.suites.base import SUITES, Suite
from spikebench.suites.locality import SNNKind, locality_grid

EVERY_RULE = ("every registered rule (BPTT, truncated BPTT, FPTT, OSTL, e-prop, OTTT, SLTT, "
              "DECOLLE, DRTP, and any a user registers) x FF/REC")

for _name, _data, _what, _defaults in (
    ("locality-shd", "shd", "Spiking Heidelberg Digits (20 classes): 700-128-20 LIF networks, "
     "spikes binned at 10 ms for T = 100 (the first second), 20 epochs",
     {"n_steps": 100, "dt_ms": 10.0, "epochs": 20}),
    ("locality-ssc", "ssc", "Spiking Speech Commands (35 classes): 700-128-35 LIF networks, "
     "10 ms bins, T = 100, 5 epochs (75466 training samples)",
     {"n_steps": 100, "dt_ms": 10.0, "epochs": 5}),
    ("locality-dvsgesture", "dvsgesture", "DVS Gesture (11 classes): events pooled 4 x 4 to "
     "2 x 32 x 32, 25 ms bins for T = 60 (1.5 s from the first event), 2048-120-84-11 LIF "
     "networks, 20 epochs", {"n_steps": 60, "dt_ms": 25.0, "epochs": 20}),
):
    SUITES.register(_name, Suite(
        _name, f"{EVERY_RULE} on {_what}, with the locality frontier; needs --data-dir "
        f"(see `spikebench data`).",
        SNNKind(locality_grid(_name, None, _data, rules=None, **_defaults)),
        studies=("frontier",),
    ))
