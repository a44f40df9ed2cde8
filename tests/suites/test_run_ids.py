"""Every suite's run ids are pinned: a change to a spec's fields, defaults or hashing that
would orphan users' trained runs fails here. The ids were written by spikebench at
415a55d (before the one-harness redesign) for each suite's default options and for
``--paper``, without the data identity (which depends on the machine's data folders);
suites added since (``robust-ablation``, ``robust-baselines``, 2026-12-03;
``locality-spectrum``, ``locality-shd``, ``locality-ssc``, ``locality-dvsgesture``,
2026-12-04) are pinned as they were added. On 2026-12-04 ``compress-robust`` became the
papers' hybrid regime (new runs, pinned as added); its earlier grid is
``compress-robust-scratch``, under the ids it had.

Deliberate changes since then are salts in the identity, each named in ``SALTS`` with
why: the id without the salt must still be the pinned one, and the salted id differs
from it (a run whose training changed is never reused)."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from spikebench.io import digest
from spikebench.suites import SUITES, SuiteOptions

PINNED = json.loads((Path(__file__).parent / "pinned_run_ids.json").read_text())
OPTIONS = {"default": SuiteOptions(), "paper": SuiteOptions(paper=True)}


def test_every_suite_is_pinned():
    assert {k.split("/")[0] for k in PINNED} == set(SUITES.names())


# identity key -> why it was added (the runs it salts trained differently from then on)
SALTS = {"agc_version": "compress-robust's AGC runs, 2026-12-03: CE saliency in eval mode, "
                        "the HIRE periods' own attention maps (issue 26, bugs 2-3)",
         "calib_steps": "robust's conversion runs, 2026-12-03: thresholds calibrated at "
                        "T = 100 and scaled by 0.3 after the layer loop, as the reference "
                        "does (issue 26, item 6)",
         "finetune_weight_decay": "robust's conversion runs, 2026-12-03: the fine-tuning's "
                                  "own weight decay (the reference's 1e-3 with --paper)"}


# suite/options -> the spec fields whose default changed since (with why): the pinned id
# is the spec's with those fields as they were, so nothing else may have changed
CHANGED = {"robust/paper": ({"arch": "vgg11", "augment": False, "eps_train": 4 / 255,
                             "cutout": 0},
                            "--paper's net: the references' VGG-11 (vgg11-ref), not "
                            "torchvision's, and their crop-and-flip augmentation; the "
                            "conversion's own eps 2/255 and cutout (issue 26)"),
           "compress-robust-scratch/paper": ({"arch": "vgg11", "augment": False}, "the same")}


def unsalted_id(spec) -> str:
    identity = spec.identity() if hasattr(spec, "identity") else {}
    if not set(SALTS) & set(identity):
        return spec.run_id
    core = {k: v for k, v in identity.items() if k not in SALTS}
    return f"{spec.run_id.rsplit('-', 1)[0]}-{digest(core)}"


@pytest.mark.parametrize("key", sorted(PINNED))
def test_run_ids_unchanged(key):
    name, options = key.split("/")
    specs, _ = SUITES.get(name).specs(OPTIONS[options])
    before = CHANGED.get(key, ({}, ""))[0]
    assert [unsalted_id(replace(s, **before)) for s in specs] == PINNED[key]
    if before:
        assert not {s.run_id for s in specs} & set(PINNED[key])  # never an old run
    for s in specs:
        assert (s.run_id == unsalted_id(s)) == (not set(SALTS) & set(getattr(
            s, "identity", dict)()))
