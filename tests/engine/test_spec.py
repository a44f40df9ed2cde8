"""The versioned, nested spec: sections, schema, ids that survive new fields."""

import json
from dataclasses import field, fields, make_dataclass

import pytest

import spikebench.engine.spec as spec_mod
from spikebench.engine.spec import (
    ADDED_LATER,
    SCHEMA_1_FIELDS,
    SECTIONS,
    ExperimentSpec,
)


def test_every_field_is_in_one_section_and_known_to_the_id():
    names = [f.name for f in fields(ExperimentSpec)]
    in_sections = [n for part in SECTIONS.values() for n in part]
    assert sorted(in_sections) == sorted(names)  # each exactly once
    # a field added without an ADDED_LATER entry would change every saved run's id
    assert set(names) == set(SCHEMA_1_FIELDS) | set(ADDED_LATER)


def test_nested_and_flat_forms_round_trip():
    spec = ExperimentSpec(seed=3, hidden=(7,), rule="eprop", rule_options={"feedback": "random"},
                          data_dir="/d", data_fingerprint="abc")
    nested = json.loads(json.dumps(spec.to_dict()))
    assert nested["schema"] == 1 and set(nested) == {"schema", "data", "model", "training",
                                                     "extras", "suite"}
    assert nested["training"]["rule_options"] == {"feedback": "random"}
    assert spec.data["data_dir"] == "/d" and spec.model["hidden"] == [7]
    assert ExperimentSpec.from_dict(nested) == spec
    assert ExperimentSpec.from_dict(spec.flat()) == spec  # spec.json of spikebench 0.1
    with pytest.raises(ValueError, match="newer than this spikebench"):
        ExperimentSpec.from_dict({**nested, "schema": 99})
    with pytest.raises(ValueError, match="unknown fields in spec section 'model'"):
        ExperimentSpec.from_dict({**nested, "model": {**nested["model"], "colour": 1}})


def test_a_field_added_later_keeps_old_ids_until_it_is_set(monkeypatch):
    newer = make_dataclass("NewerSpec", [("dropout", float, field(default=0.0))],
                           bases=(ExperimentSpec,), frozen=True)
    monkeypatch.setitem(ADDED_LATER, "dropout", 0.0)
    assert newer(seed=1).run_id == ExperimentSpec(seed=1).run_id
    assert newer(seed=1, dropout=0.5).run_id != ExperimentSpec(seed=1).run_id


def test_a_new_schema_changes_every_id_on_purpose(monkeypatch):
    before = ExperimentSpec().run_id
    monkeypatch.setattr(spec_mod, "SCHEMA", 2)
    assert ExperimentSpec().run_id != before
