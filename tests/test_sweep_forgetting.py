"""The forgetting-aware learning-rate choice (issue 38 item 3, ``selection.forgetting``): the best rate
on the target dev set among those whose forgetting on a source dev set stays within the declared
bound; none within it, the rate that forgets least; a dev run records that forgetting (adapted minus
base on the source dev set); the grid refuses a test set or an undecoded metric; the report says so."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from espnet_peft.errors import PeftError
from espnet_peft.sweep import protocol
from espnet_peft.sweep.render import tuning_table
from sweep_rates import RateChooser
from sweep_recorder import Recorder

RATES = [1e-3, 3e-3, 1e-2]
DEV = {1e-3: 30.0, 3e-3: 25.0, 1e-2: 20.0}       # the most aggressive rate learns most ...
FORGOT = {1e-3: 1.0, 3e-3: 2.0, 1e-2: 5.0}       # ... and forgets most


class Store:
    def __init__(self, root, records):
        self.root, self.records = root, records

    def current(self, tag, kind, identity):
        return self.records.get(tag)


RUNS = SimpleNamespace(tag=lambda c, lr, s: f"{c.name}_lr{lr:g}_s{s}", identity=lambda c, s: {})
CELL = SimpleNamespace(name="lora_b1pct", lrs=RATES, parent=None)


def chooser(tmp_path, selection, forgot=FORGOT):
    proto = protocol({"seeds": [1], "selection": selection})
    records = {RUNS.tag(CELL, lr, 1): {"dev_score": DEV[lr], **({} if forgot.get(lr) is None else
                                                                 {"dev_forgetting": forgot[lr]})} for lr in RATES}
    return RateChooser(proto, Store(tmp_path, records), RUNS, {CELL.name: CELL}, set(), "child_dev", None,
                       write=False)


def test_the_best_rate_within_the_bound_is_chosen(tmp_path):
    assert chooser(tmp_path, {"metric": "dev_wer"}).decide(CELL) == 1e-2  # target dev alone
    rc = chooser(tmp_path, {"metric": "dev_wer", "forgetting": {"set": "source_dev", "bound": 3}})
    assert rc.decide(CELL) == 3e-3  # 1e-2 forgets 5 points > 3
    choice = rc.choices[CELL.name]
    assert choice["forgetting"] == {"set": "source_dev", "bound": 3.0}
    assert choice["forgetting_scores"] == {"0.001": [1.0], "0.003": [2.0], "0.01": [5.0]}


def test_none_within_the_bound_chooses_the_rate_that_forgets_least(tmp_path):
    rc = chooser(tmp_path, {"metric": "dev_wer", "forgetting": {"set": "source_dev", "bound": 0.5}})
    assert rc.decide(CELL) == 1e-3


def test_a_run_without_its_forgetting_is_not_scored_yet(tmp_path):
    rc = chooser(tmp_path, {"metric": "dev_wer", "forgetting": {"set": "source_dev", "bound": 3}},
                 forgot={1e-3: 1.0, 3e-3: None, 1e-2: 5.0})  # e.g. a record of a sweep without the bound
    assert not rc.scored(CELL, 3e-3, 1) and rc.scored(CELL, 1e-3, 1)
    assert rc.decide(CELL) is None  # its dev run runs again (stage 14 added)


@pytest.mark.parametrize("forgetting, message", [
    ({"set": "source_test", "bound": 3}, "is a test set"),
    ({"set": "source_dev", "bound": -1}, "points >= 0"),
    ({"set": "source_dev"}, "points >= 0"),
    ("source_dev", "must be {set"),
])
def test_the_grid_refuses_a_bound_it_cannot_honour(forgetting, message):
    with pytest.raises(PeftError, match=message):
        protocol({"selection": {"forgetting": forgetting}})
    with pytest.raises(PeftError, match="needs a decoded dev score"):
        protocol({"selection": {"metric": "valid_acc", "forgetting": {"set": "source_dev", "bound": 1}}})


def test_the_report_states_the_bound_and_each_rates_forgetting(tmp_path):
    rc = chooser(tmp_path, {"metric": "dev_wer", "forgetting": {"set": "source_dev", "bound": 3}})
    text = tuning_table({CELL.name: rc.table(CELL, rc.decide(CELL))})
    assert "forgetting-aware" in text and "`source_dev` is at most 3 points" in text
    assert "**0.003: 25.00 (+2.00)**" in text and "0.01: 20.00 (+5.00)" in text
    plain = chooser(tmp_path, {"metric": "dev_wer"})
    assert "forgetting" not in tuning_table({CELL.name: plain.table(CELL, plain.decide(CELL))})


def test_a_dev_run_records_its_forgetting_on_the_source_dev_set(tmp_path):
    exp = tmp_path / "exp"
    for d, wer in ((exp / "t" / "merged" / "decode" / "child_dev", 25.0),
                   (exp / "t" / "merged" / "decode" / "source_dev", 12.5), (exp / "base_decode" / "source_dev", 10.0)):
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"wer": wer}))
    proto = protocol({"selection": {"metric": "dev_wer", "forgetting": {"set": "source_dev", "bound": 3}}})
    store = SimpleNamespace(load_data=lambda: {}, save_data=lambda data: None)
    args = SimpleNamespace(expdir=exp, dumpdir=tmp_path / "dump", dev_set="child_dev")
    rec = Recorder(args, proto, store, SimpleNamespace(data_id="d", foundation_id="f"), "child_dev", "c", [])
    out = {"tag": "t"}
    assert rec.dev_record(out, exp / "t")
    assert out["dev_score"] == 25.0 and out["dev_forgetting"] == 2.5 and out["forgetting_set"] == "source_dev"
    (exp / "base_decode" / "source_dev" / "result.json").unlink()  # the base model's decoding not made yet
    assert not rec.dev_record({"tag": "t"}, exp / "t")
