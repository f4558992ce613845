"""One source of truth per method: a method declared in one new file and registered from outside
the package gets config keys, planning, wrapping, merge, state and bench FLOP bounds; the generic
modules name no method; every method file stays small."""
from __future__ import annotations

import importlib
import re
import sys

import pytest
import torch
import yaml

import espnet_peft
from espnet_peft import PeftError
from espnet_peft import bench
from espnet_peft.methods import REGISTRY, SubspaceRotationLinear, get_method

from conftest import ROOT, make_asr_model, randomize_trainables

TOY_METHOD = '''
"""A toy method: W' = W + s B A0, A0 a fixed random (seeded) n x d_in buffer, B trainable (zero)."""
import torch
from torch import nn

from espnet_peft.methods import register
from espnet_peft.methods.layer import AdaptedLinear
from espnet_peft.methods.options import Number, Option, Options
from espnet_peft.methods.sizing import PerUnitCost

OPTIONS = Options(Option("scale", 1.0, Number(0, low_open=True), "s, the branch's scale"))


class ToyLinear(AdaptedLinear):
    options = OPTIONS
    adapter_buffers = ("toy_A",)

    def __init__(self, base, n, **options):
        super().__init__(base, {"n": n}, options)
        g = torch.Generator().manual_seed(n)
        self.register_buffer("toy_A", torch.randn(n, self.in_features, generator=g).to(**self.factory()))
        self.toy_B = nn.Parameter(torch.zeros(self.out_features, n, **self.factory()))

    def delta(self, x):
        return (x @ self.toy_A.t() @ self.toy_B.t()) * self.opts["scale"]

    def delta_weight(self):
        return (self.toy_B @ self.toy_A) * self.opts["scale"]


class Toy(PerUnitCost):
    name = "toy"
    hyper_keys = ("n",)
    aliases = {"toy_width": "n"}
    options = OPTIONS
    layer = ToyLinear

    def unit(self, shape, opts):
        return shape[0]

    def flops(self, shape, hyper, tokens):
        return 4.0 * tokens * hyper["n"] * (shape[0] + shape[1])


register(Toy())
'''
W1 = "encoder.encoders.0.feed_forward.w_1"  # 64 x 32 in the tiny ASR model


@pytest.fixture
def toy(tmp_path, monkeypatch):
    (tmp_path / "toy_method.py").write_text(TOY_METHOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("toy_method")
    yield module
    REGISTRY.pop("toy", None)
    sys.modules.pop("toy_method", None)


def test_a_new_method_file_plugs_into_config_planning_merge_state_and_bench(toy, tmp_path):
    from espnet_peft.config import hyper_names, with_settings

    assert "toy" in espnet_peft.METHODS and {"n", "toy_width"} <= set(hyper_names())
    # a budget set on a toy config (as the recipe's --budget and the sweep do) drops its sizes
    assert with_settings({"method": "toy", "toy_width": 3}, {"budget": "1%"}) == {"method": "toy", "budget": "1%"}
    # planning: the budget is solved by the toy's declaration (n = floor(P / d_out))
    plan = espnet_peft.plan_peft(make_asr_model(), {"method": "toy", "target_modules": [W1], "budget": 500})
    assert [r.hyper for r in plan.rows] == [{"n": 500 // 64}] and plan.total == 7 * 64
    # explicit sizes under the alias; options checked against the toy's declaration
    assert espnet_peft.plan_peft(make_asr_model(), {"method": "toy", "target_modules": [W1],
                                                    "toy_width": 3}).rows[0].hyper == {"n": 3}
    with pytest.raises(PeftError, match="'scale' must be a number > 0"):
        espnet_peft.plan_peft(make_asr_model(), {"method": "toy", "target_modules": [W1], "n": 2, "scale": 0})
    with pytest.raises(PeftError, match="'scael' is not a config key.*did you mean scale"):
        espnet_peft.plan_peft(make_asr_model(), {"method": "toy", "target_modules": [W1], "n": 2, "scael": 2})
    # wrapping, state round trip, merge
    cfg = {"method": "toy", "target_modules": ["feed_forward.w_1", "attn.linear_q"], "budget": 2000, "scale": 0.5}
    model = make_asr_model()
    espnet_peft.apply_peft(model, cfg)
    assert isinstance(model.encoder.encoders[0].feed_forward.w_1, toy.ToyLinear)
    randomize_trainables(model)
    from espnet_peft.bin.merge import _probe

    want = _probe(model)
    fresh = make_asr_model()
    espnet_peft.apply_peft(fresh, cfg)
    espnet_peft.load_peft_state_dict(fresh, espnet_peft.peft_state_dict(model))
    assert torch.allclose(_probe(fresh), want, atol=1e-6)
    espnet_peft.merge_peft(fresh)
    assert not any(isinstance(m, toy.ToyLinear) for m in fresh.modules())
    assert set(fresh.state_dict()) == set(make_asr_model().state_dict())
    assert torch.allclose(_probe(fresh), want, atol=1e-5)
    # the benchmark: a row of its own, its FLOP bound from its declaration
    assert "toy" in bench.bench_rows()
    rows = [r.as_dict() for r in plan.rows]
    assert bench.flop_bound("toy", rows, {W1: 100}, {W1: [64, 32]}) == 4.0 * 100 * 7 * 96
    # the config CLI drops its explicit size (an alias included) when a budget is set
    from espnet_peft.bin.peft_config import main

    src, out = tmp_path / "toy.yaml", tmp_path / "toy_b.yaml"
    src.write_text(yaml.safe_dump({"method": "toy", "target_modules": [W1], "toy_width": 3}))
    assert main([str(src), str(out), "--set", "budget=1%"]) == 0
    assert yaml.safe_load(out.read_text()) == {"method": "toy", "target_modules": [W1], "budget": "1%"}


GENERIC = ["inject.py", "budget.py", "merge.py", "state.py", "checkpoint.py", "config.py", "targets.py",
           "fingerprint.py", "provenance.py", "names.py", "errors.py", "bench.py", "bin/bench.py",
           "loading.py", "preflight.py", "divergence.py", "trainer.py", "lock.py", "inference.py"]


@pytest.mark.parametrize("path", [ROOT / "espnet_peft" / n for n in GENERIC] + sorted((ROOT / "local").glob("*.sh")),
                         ids=lambda p: p.name)
def test_generic_modules_and_shared_recipe_scripts_name_no_method(path):
    methods = "|".join(sorted(REGISTRY, key=len, reverse=True))
    hits = [line for line in path.read_text().splitlines() if re.search(rf"\b({methods})\b", line, re.I)]
    assert not hits, hits


@pytest.mark.parametrize("path", sorted((ROOT / "espnet_peft" / "methods").glob("*.py")), ids=lambda p: p.name)
def test_method_files_are_small(path):
    assert len(path.read_text().splitlines()) < 200


def test_one_declaration_of_every_default():
    """Layers built directly take the defaults the config uses; SSVD is SSVD-O without the
    outer rotation: its options are SSVD-O's but the inner share, its plans SSVD-O's with
    inner = 1."""
    ssvd, ssvd_o = get_method("ssvd"), get_method("ssvd_o")
    layer = SubspaceRotationLinear(torch.nn.Linear(12, 10), 3)
    assert layer.opts == {o.name: o.default for o in SubspaceRotationLinear.options}
    assert layer.opts["svd"] == ssvd_o.options["svd"].default == espnet_peft.PeftConfig.from_dict(
        {"method": "ssvd_o", "target_modules": ["x"], "k": 2}).options["svd"]
    assert set(ssvd.options.names()) == set(ssvd_o.options.names()) - {"inner"}
    for budget in (10, 100, 1000):
        assert ssvd.solve((40, 60), budget, {}) == {"k": ssvd_o.solve((40, 60), budget, {"inner": 1.0})["k_in"]}
    assert ssvd.count((40, 60), {"k": 7}, {}) == ssvd_o.count((40, 60), {"k_in": 7, "k_out": 0}, {})
