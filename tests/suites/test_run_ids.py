"""Every suite's run ids are pinned: a change to a spec's fields, defaults or hashing that
would orphan users' trained runs fails here. The ids were written by spikebench at
415a55d (before the one-harness redesign) for each suite's default options and for
``--paper``, without the data identity (which depends on the machine's data folders)."""

import json
from pathlib import Path

import pytest

from spikebench.suites import SUITES, SuiteOptions

PINNED = json.loads((Path(__file__).parent / "pinned_run_ids.json").read_text())
OPTIONS = {"default": SuiteOptions(), "paper": SuiteOptions(paper=True)}


def test_every_suite_is_pinned():
    assert {k.split("/")[0] for k in PINNED} == set(SUITES.names())


@pytest.mark.parametrize("key", sorted(PINNED))
def test_run_ids_unchanged(key):
    name, options = key.split("/")
    specs, _ = SUITES.get(name).specs(OPTIONS[options])
    assert [s.run_id for s in specs] == PINNED[key]
