"""The budget planner (methods.md, "Per-subspace parameter-budget allocation"), config
parsing and the clear errors, on a real ESPnet ASR model (E-Branchformer + Transformer decoder)."""
from __future__ import annotations

import argparse

import pytest
import yaml

import espnet_peft
from espnet_peft import PeftError
from espnet_peft.budget import group_of
from espnet_peft.config import PeftConfig
from espnet_peft.names import matches

from conftest import ROOT, make_asr_model, make_conformer

TARGETS = ["*attn.linear_q", "*attn.linear_k", "*attn.linear_v", "*attn.linear_out", "feed_forward*.w_1",
           "feed_forward*.w_2", "channel_proj1.0", "channel_proj2", "merge_proj", "output_layer"]
BUDGETED = ["lora", "dora", "pissa", "ssvd", "ssvd_o"]


@pytest.fixture(scope="module")
def asr():
    return make_asr_model()


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("method", BUDGETED)
def test_matched_budget_every_method(asr, method):
    budget = 0.15
    plan = espnet_peft.plan_peft(asr, {"method": method, "target_modules": TARGETS, "budget": budget})
    cap = int(budget * n_params(asr))
    assert plan.budget == cap
    assert plan.total <= cap
    assert plan.total >= 0.9 * cap, f"{method} spends only {plan.total / cap:.1%} of the budget"
    assert plan.fraction == pytest.approx(plan.total / n_params(asr))
    assert {r.group for r in plan.rows} == {"attn", "ffn_up", "ffn_down", "merge", "decoder", "output"}


def test_rank_and_k_solving_formulas(asr):
    name = "encoder.encoders.0.feed_forward.w_1"  # 64 x 32
    d_out, d_in = 64, 32
    for budget in (96, 500, 1234):
        one = {"target_modules": [name], "budget": budget}
        r = espnet_peft.plan_peft(asr, {"method": "lora", **one}).rows[0]
        assert r.hyper == {"r": budget // (d_in + d_out)} and r.params == r.hyper["r"] * (d_in + d_out)
        r = espnet_peft.plan_peft(asr, {"method": "pissa", **one}).rows[0]
        assert r.hyper == {"r": budget // (d_in + d_out)}
        if budget >= d_out + d_in + d_out:
            r = espnet_peft.plan_peft(asr, {"method": "dora", **one}).rows[0]
            assert r.hyper == {"r": (budget - d_out) // (d_in + d_out)}
        r = espnet_peft.plan_peft(asr, {"method": "ssvd", **one}).rows[0]
        k = r.hyper["k"]
        assert k * (k + 1) // 2 <= budget and (k == 32 or (k + 1) * (k + 2) // 2 > budget)


@pytest.mark.parametrize("inner", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_ssvd_o_inner_share(asr, inner):
    plan = espnet_peft.plan_peft(asr, {"method": "ssvd_o", "target_modules": ["encoders.0.feed_forward.w_1"],
                                       "budget": 300, "allocation": {"inner": inner}})
    h = plan.rows[0].hyper
    tri = lambda k: k * (k - 1) // 2
    p = max(h["k_in"], h["k_out"])
    assert tri(h["k_in"]) + tri(h["k_out"]) + p == plan.rows[0].params <= 300
    if inner == 1.0:
        assert h["k_out"] == 0 and h["k_in"] > 0  # SSVD
    elif inner == 0.0:
        assert h["k_in"] == 0 and h["k_out"] > 0  # outer only
    else:
        share = tri(h["k_in"]) / (tri(h["k_in"]) + tri(h["k_out"]))
        assert abs(share - inner) < 0.2


def test_ssvd_o_with_inner_one_equals_ssvd(asr):
    a = espnet_peft.plan_peft(asr, {"method": "ssvd", "target_modules": TARGETS, "budget": 3000})
    b = espnet_peft.plan_peft(asr, {"method": "ssvd_o", "target_modules": TARGETS, "budget": 3000,
                                    "allocation": {"inner": 1.0}})
    assert [r.hyper["k"] for r in a.rows] == [r.hyper["k_in"] for r in b.rows]
    assert a.total == b.total


def test_group_weights_and_presets(asr):
    base = {"method": "lora", "target_modules": TARGETS, "budget": 4000}
    att = espnet_peft.plan_peft(asr, {**base, "allocation": {"weights": "attention"}})
    assert {r.group for r in att.rows} == {"attn"}
    assert att.skipped and all("weight 0" in why for _, why in att.skipped)
    ff = espnet_peft.plan_peft(asr, {**base, "allocation": {"weights": "feedforward"}})
    assert {r.group for r in ff.rows} == {"ffn_up", "ffn_down"}
    w = espnet_peft.plan_peft(asr, {**base, "allocation": {"weights": {"attn": 3, "ffn_up": 1}}})
    groups = w.by_group()
    assert set(groups) == {"attn", "ffn_up"}
    assert 2.0 < groups["attn"][1] / groups["ffn_up"][1] < 4.0
    uni = espnet_peft.plan_peft(asr, base)  # uniform: every module the same share
    shares = [r.params for r in uni.rows]
    assert max(shares) <= 2.5 * min(shares)


def test_depth_groups(asr):
    cfg = {"method": "ssvd", "target_modules": ["attn.linear_q", "attn.linear_v"], "budget": 400,
           "allocation": {"depth": {"split": 1}, "weights": {"attn@upper": 1}}}
    plan = espnet_peft.plan_peft(asr, cfg)
    assert {r.group for r in plan.rows} == {"attn@upper"}
    assert all(".encoders.1." in r.name for r in plan.rows)


def test_overrides(asr):
    cfg = {"method": "lora", "target_modules": TARGETS, "budget": 4000,
           "overrides": {"encoders.0.attn.linear_q": {"r": 7}, "output_layer": "skip"}}
    plan = espnet_peft.plan_peft(asr, cfg)
    rows = {r.name: r for r in plan.rows}
    assert rows["encoder.encoders.0.attn.linear_q"].hyper == {"r": 7}
    assert "decoder.output_layer" not in rows
    assert plan.total <= 4000


def test_explicit_hyper_fraction_of_min_d(asr):
    plan = espnet_peft.plan_peft(asr, {"method": "ssvd", "target_modules": ["feed_forward.w_1"], "k": 0.4})
    assert all(r.hyper["k"] == round(0.4 * min(r.shape)) for r in plan.rows)
    plan = espnet_peft.plan_peft(asr, {"method": "lora", "target_modules": ["feed_forward.w_1"], "rank": 4})
    assert all(r.hyper == {"r": 4} for r in plan.rows) and plan.budget is None


def test_plan_prints_a_table(asr):
    plan = espnet_peft.plan_peft(asr, {"method": "ssvd_o", "target_modules": TARGETS, "budget": "1%"})
    text = str(plan)
    assert "module" in text and "total trainable" in text and f"{plan.total:,}" in text
    assert "encoder.encoders.1.merge_proj" in text
    d = plan.as_dict()
    assert d["total"] == plan.total and len(d["rows"]) == len(plan.rows)


def test_boundary_matching():
    assert matches("encoder.encoders.0.attn.linear_q", "attn.linear_q")
    assert not matches("encoder.encoders.0.self_attn.linear_q", "attn.linear_q")
    assert matches("decoder.decoders.0.src_attn.linear_q", "*attn.linear_q")
    assert not matches("encoder.encoders.0.attn.linear_q", "ncoders.0.attn.linear_q")
    conformer = make_conformer()
    with pytest.raises(PeftError, match="attn.linear_q"):
        espnet_peft.plan_peft(conformer, {"method": "lora", "target_modules": ["attn.linear_q"], "rank": 2})


def test_groups_of_espnet_names():
    cfg = PeftConfig.from_dict({"method": "lora", "target_modules": ["x"], "rank": 1})
    assert group_of("encoder.encoders.3.attn.linear_q", cfg) == "attn"
    assert group_of("encoder.encoders.3.cgmlp.channel_proj1.0", cfg) == "ffn_up"
    assert group_of("encoder.encoders.3.cgmlp.channel_proj2", cfg) == "ffn_down"
    assert group_of("encoder.encoders.3.feed_forward_macaron.w_2", cfg) == "ffn_down"
    assert group_of("encoder.encoders.3.merge_proj", cfg) == "merge"
    assert group_of("decoder.decoders.0.src_attn.linear_k", cfg) == "decoder"
    assert group_of("decoder.output_layer", cfg) == "output"


# --------------------------------------------------------------------------- config sources
def test_config_from_yaml_object_and_shipped_files(asr, tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"method": "lora", "target_modules": TARGETS, "budget": 6000}))
    a = espnet_peft.plan_peft(asr, str(p))
    b = espnet_peft.plan_peft(asr, argparse.Namespace(method="lora", target_modules=TARGETS, budget=6000))
    assert [r.hyper for r in a.rows] == [r.hyper for r in b.rows]


def test_shipped_configs_plan_on_the_embedded_foundation_architecture():
    """Every conf/peft/*.yaml plans against the embedded recipe's foundation model (5 M
    parameters, 87 target matrices: 1% is below one LoRA rank per matrix there, so budgeted
    configs are planned at 4%)."""
    cfg = yaml.safe_load((ROOT / "egs2/embedded/asr1/conf/train_foundation.yaml").read_text())
    model = make_asr_model(token_list=["<blank>", "<unk>"] + [f"t{i}" for i in range(96)] + ["<sos/eos>"],
                           **{k: cfg[k] for k in ("encoder", "encoder_conf", "decoder", "decoder_conf", "model_conf")})
    shipped = sorted((ROOT / "conf" / "peft").glob("*.yaml"))
    assert len(shipped) >= 6
    for f in shipped:
        cfg = yaml.safe_load(f.read_text())
        if "budget" in cfg:
            cfg["budget"] = "4%"
        plan = espnet_peft.plan_peft(model, cfg)
        assert plan.total > 0, f
        if plan.budget:
            assert 0.9 * plan.budget <= plan.total <= plan.budget, f


# --------------------------------------------------------------------------- clear errors
@pytest.mark.parametrize("cfg,pattern", [
    ({"method": "lora", "target_modules": ["nonexistent_layer"], "rank": 2}, "matched no module"),
    ({"method": "lora", "target_modules": ["attn.linear_qq"], "rank": 2}, "did you mean"),
    ({"method": "lora", "target_modules": ["feed_forward.w_1"], "exclude_modules": ["w_1"], "rank": 2},
     "no module left"),
    ({"method": "lora", "target_modules": TARGETS, "budget": 50}, "too small for lora.*encoder.encoders"),
    ({"method": "lora", "target_modules": ["feed_forward.w_1"], "rank": 40}, "r=40 is outside"),
    ({"method": "ssvd", "target_modules": ["feed_forward.w_1"], "k": 33}, "k=33 is outside"),
    ({"method": "loraa", "target_modules": ["feed_forward.w_1"], "rank": 2}, "unknown method 'loraa'.*lora"),
    ({"method": "lora", "target_modules": ["feed_forward.w_1"], "rank": 2, "lr": 1}, "'lr' is not a config key"),
    ({"method": "ssvd", "target_modules": ["feed_forward.w_1"], "k": 2, "alpha": 3}, "'alpha' applies to lora"),
    ({"method": "lora", "target_modules": ["channel_proj1"], "rank": 2}, "cannot adapt.*channel_proj1.0"),
    ({"method": "lora", "target_modules": ["feed_forward.w_1"], "rank": 2, "budget": 100}, "either a budget"),
    ({"method": "lora", "target_modules": ["feed_forward.w_1"]}, "needs a budget"),
    ({"method": "lora", "target_modules": [], "rank": 2}, "target_modules"),
    ({"method": "full", "target_modules": ["encoder"], "budget": 100}, "no budget knob"),
    ({"method": "lora", "target_modules": ["feed_forward.w_1"], "budget": -3}, "budget must be"),
    ({"method": "lora", "target_modules": ["feed_forward.w_1"], "budget": 1000,
      "allocation": {"weights": {"atn": 1}}}, "names group"),
    ({"method": "lora", "target_modules": ["feed_forward.w_1"], "budget": 1000, "allocation": {"innr": 1}},
     "unknown allocation key"),
])
def test_clear_errors(asr, cfg, pattern):
    with pytest.raises(PeftError, match=pattern):
        espnet_peft.apply_peft(asr, cfg)
    assert getattr(asr, "peft_plan", None) is None  # nothing was changed
    assert all(p.requires_grad for p in asr.parameters())


def test_allow_skip_skips_small_modules(asr):
    cfg = {"method": "lora", "target_modules": TARGETS, "budget": 2000, "allocation": {"within": "size"},
           "allow_skip": True}
    plan = espnet_peft.plan_peft(asr, cfg)
    assert plan.total <= 2000 and plan.rows


def test_missing_config_file():
    with pytest.raises(PeftError, match="not found"):
        PeftConfig.from_any("/nonexistent/peft.yaml")


def test_budget_strings():
    from espnet_peft.config import parse_budget

    assert parse_budget("1%") == pytest.approx(0.01)
    assert parse_budget("1e5") == 100000
    assert parse_budget(0.005) == 0.005
    with pytest.raises(PeftError):
        parse_budget("lots")


def test_apply_twice_is_refused(asr):
    m = make_asr_model()
    espnet_peft.apply_peft(m, {"method": "lora", "target_modules": ["feed_forward.w_1"], "rank": 2})
    with pytest.raises(PeftError, match="already"):
        espnet_peft.apply_peft(m, {"method": "lora", "target_modules": ["feed_forward.w_1"], "rank": 2})


def test_full_method_trains_targets_only():
    m = make_asr_model()
    plan = espnet_peft.apply_peft(m, {"method": "full", "target_modules": ["encoder"]})
    enc = sum(p.numel() for p in m.encoder.parameters())
    assert plan.total == enc == sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert not any(p.requires_grad for p in m.decoder.parameters())
    state = espnet_peft.peft_state_dict(m)
    assert set(k for k in state if k not in ("peft_base_fingerprint", "peft_adapter_config")) == \
        {f"encoder.{k}" for k in m.encoder.state_dict()}


def test_plan_cli(tmp_path, capsys):
    from conftest import TINY_ASR_CONFIG
    from espnet_peft.bin.plan import main

    cfg = dict(TINY_ASR_CONFIG, token_list=["<blank>", "<unk>"] + list("abcdefgh ") + ["<sos/eos>"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    rc = main(["--peft_config", str(ROOT / "conf" / "peft" / "ssvd_o.yaml"), "--model_config",
               str(tmp_path / "config.yaml"), "--budget", "10%", "--json", str(tmp_path / "plan.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "total trainable" in out and "encoder.encoders.0.attn.linear_q" in out
    import json

    assert json.loads((tmp_path / "plan.json").read_text())["method"] == "ssvd_o"
    rc = main(["--peft_config", str(ROOT / "conf" / "peft" / "lora.yaml"), "--model_config",
               str(tmp_path / "config.yaml")])  # 1% of a 67 k model: below one rank per module
    assert rc == 2 and "too small for lora" in capsys.readouterr().err


# ------------------------------------------------------------------ partial placement (issue 18, item 4)
def _block_depths(names):
    """(stack, relative depth) of each block module name, as the placement priority reads it."""
    from espnet_peft.names import block_index

    out = {}
    for n in names:
        i = block_index(n)
        if i is not None:
            out[n] = (n[:n.find(f".{i}.")], i)
    return out


@pytest.mark.parametrize("method", ["lora", "dora", "pissa"])
def test_placement_below_one_unit_per_matrix(asr, method):
    """A budget below one unit on every target matrix: strict placement refuses it, naming the
    remedy; upper_first / lower_first adapt the largest set of deepest / shallowest modules in
    which every module gets a unit, within the budget, and list every module left out."""
    strict = {"method": method, "target_modules": TARGETS, "budget": 1500}
    with pytest.raises(PeftError, match="placement: upper_first"):
        espnet_peft.plan_peft(asr, strict)
    every = espnet_peft.plan_peft(asr, {**strict, "budget": None, "r": 1})  # every target, rank 1
    names = [r.name for r in every.rows]
    assert every.total > 1500  # one unit per matrix does not fit
    for placement in ("upper_first", "lower_first"):
        plan = espnet_peft.plan_peft(asr, {**strict, "allocation": {"placement": placement}})
        adapted = [r.name for r in plan.rows]
        left = [n for n, why in plan.skipped]
        assert plan.total <= 1500 and adapted and left
        assert sorted(adapted + left) == sorted(names)  # every target is adapted or listed as left out
        assert all(r.hyper.get("r", 0) >= 1 for r in plan.rows)
        assert all(f"placement {placement}" in why for _, why in plan.skipped)
        assert f"skipped: {left[0]} (placement {placement}" in str(plan)
        # the priority: every adapted block module is at least as deep (shallow) as every left-out one
        depth = {n: (i + 0.5) / max(j + 1 for m, (s2, j) in _block_depths(names).items() if s2 == s)
                 for n, (s, i) in _block_depths(names).items()}
        kept = [depth[n] for n in adapted if n in depth]
        dropped = [depth[n] for n in left if n in depth]
        if placement == "upper_first":
            assert min(kept) >= max(dropped)
        else:
            assert max(kept) <= min(dropped)
        # the largest such set: one more module (the next in priority) would not fit
        with pytest.raises(PeftError, match="too small"):
            espnet_peft.plan_peft(asr, {**strict, "target_modules": adapted + [left[0]]})


def test_placement_changes_nothing_when_every_module_fits(asr):
    cfg = {"method": "lora", "target_modules": TARGETS, "budget": 0.1}
    plain = espnet_peft.plan_peft(asr, cfg)
    for placement in ("upper_first", "lower_first"):
        plan = espnet_peft.plan_peft(asr, {**cfg, "allocation": {"placement": placement}})
        assert [r.as_dict() for r in plan.rows] == [r.as_dict() for r in plain.rows] and not plan.skipped


def test_placement_errors(asr):
    with pytest.raises(PeftError, match="placement must be one of all, upper_first, lower_first.*upper_first"):
        espnet_peft.plan_peft(asr, {"method": "lora", "target_modules": TARGETS, "budget": 3000,
                                    "allocation": {"placement": "uper_first"}})
    with pytest.raises(PeftError, match="too small for lora on any target module"):
        espnet_peft.plan_peft(asr, {"method": "lora", "target_modules": TARGETS, "budget": 20,
                                    "allocation": {"placement": "upper_first"}})


def test_placement_order_interleaves_stacks_by_relative_depth():
    from espnet_peft.budget import placement_order

    names = ["encoder.embed.out.0", "encoder.encoders.0.w", "encoder.encoders.3.w", "decoder.decoders.0.w",
             "decoder.decoders.1.w", "decoder.output_layer"]
    up = [names[i] for i in placement_order(names, "upper_first")]
    assert up == ["encoder.encoders.3.w", "decoder.decoders.1.w", "decoder.decoders.0.w", "encoder.encoders.0.w",
                  "encoder.embed.out.0", "decoder.output_layer"]
    low = [names[i] for i in placement_order(names, "lower_first")]
    assert low == ["encoder.encoders.0.w", "decoder.decoders.0.w", "decoder.decoders.1.w", "encoder.encoders.3.w",
                   "encoder.embed.out.0", "decoder.output_layer"]
