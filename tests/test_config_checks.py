"""Nothing accepted without a word: every pattern or option without effect is an error that names
it (with the names that exist), raised before the model is touched (issue 19, item 6)."""
from __future__ import annotations

import warnings

import pytest

import espnet_peft
from espnet_peft import PeftError
from espnet_peft.errors import PeftWarning

from conftest import make_asr_model

FFN = ["feed_forward.w_1"]


@pytest.fixture(scope="module")
def asr():
    return make_asr_model()


@pytest.mark.parametrize("cfg,pattern", [
    # patterns that match nothing
    ({"method": "lora", "target_modules": FFN, "rank": 2, "overrides": {"encoders.0.feed_forward.w_11": {"r": 3}}},
     r"overrides pattern\(s\) matched no module among the target modules: 'encoders.0.feed_forward.w_11' "
     r"\(did you mean encoders.0.feed_forward.w_1"),
    ({"method": "lora", "target_modules": FFN, "rank": 2, "exclude_modules": ["encoders.1.feed_forward.w_11"]},
     r"exclude_modules pattern\(s\) matched no module among the target modules: 'encoders.1.feed_forward.w_11' "
     r"\(did you mean encoders.1.feed_forward.w_1"),
    ({"method": "lora", "target_modules": FFN, "budget": 2000, "allocation": {"groups": {"first": ["encoders.9.*"]}}},
     r"allocation.groups.first pattern\(s\) matched no module.*'encoders.9.\*'"),
    # Conformer names on an E-Branchformer: only the decoder's self_attn matches, the encoder would go unadapted
    ({"method": "lora", "target_modules": ["self_attn.linear_q", "self_attn.linear_v"], "rank": 2},
     r"adapts nothing under 'encoder': 'self_attn.linear_q' matches only modules under decoder "
     r"\(did you mean attn.linear_q"),
    # options and keys that have no effect or no meaning
    ({"method": "lora", "target_modules": FFN, "budget": 2000, "allocation": {"inner": 0.3}},
     r"allocation.inner .* method 'lora' has no such split"),
    ({"method": "ssvd", "target_modules": FFN, "budget": 2000, "allocation": {"inner": 0.3}},
     r"allocation.inner splits a budget between the inner and outer sides of ssvd_o; method 'ssvd'"),
    ({"method": "lora", "target_modules": FFN, "rank": 2, "dropout": -0.5}, r"'dropout' must be a number in \[0, 1\)"),
    ({"method": "lora", "target_modules": FFN, "rank": 2, "alpha": 0}, r"'alpha' must be null or a number > 0"),
    ({"method": "pissa", "target_modules": FFN, "rank": 2, "svd_niter": 8},
     r"'svd_niter' has no effect unless svd: randomized \(svd is 'full'\)"),
    ({"method": "ssvd", "target_modules": FFN, "k": 2, "rotation": "cayly"}, r"'rotation' must be one of .*did you mean cayley"),
    ({"method": "lora", "target_modules": FFN, "rank": 2, "dropuot": 0.1}, r"'dropuot' is not a config key \(did you mean dropout"),
    ({"method": "lora", "target_modules": FFN, "rank": 2, "overrides": {"w_1": {"rr": 3}}},
     r"overrides\['w_1'\]: 'rr' is not a hyperparameter of lora \(r, rank\)"),
    ({"method": "lora", "target_modules": FFN, "rank": 2, "r": 3}, r"'r' is given twice"),
    ({"method": "lora", "target_modules": FFN, "budget": 2000, "allocation": {"depth": {"splt": 1}}},
     r"allocation.depth must be"),
    ({"method": "lora", "target_modules": FFN, "rank": 2, "allow_skip": "yes"}, r"allow_skip must be true or false"),
    ({"method": "hff", "target_modules": ["encoder"], "head_blocks": 1, "groups": 0}, r"'groups' must be an int >= 1"),
    ({"method": "lora", "target_modules": FFN, "budget": "150%"},
     r"budget '150%' is out of range: a percentage must lie in \(0%, 100%\)"),
])
def test_no_effect_is_an_error_before_compute(asr, cfg, pattern):
    with pytest.raises(PeftError, match=pattern):
        espnet_peft.apply_peft(asr, cfg)
    assert getattr(asr, "peft_plan", None) is None
    assert all(p.requires_grad for p in asr.parameters())


def test_a_pattern_that_misses_the_encoder_beside_others_is_a_warning(asr):
    """The encoder is adapted (feed_forward.w_1), but a Conformer name matches the decoder only."""
    with pytest.warns(PeftWarning, match=r"'self_attn.linear_q' matches only modules under decoder, none under "
                                         r"'encoder' \(did you mean attn.linear_q"):
        espnet_peft.plan_peft(asr, {"method": "lora", "target_modules": ["self_attn.linear_q"] + FFN, "rank": 2})


@pytest.mark.parametrize("targets", [["decoder.decoders.*.self_attn.linear_q"], ["decoder.output_layer"],
                                     ["*attn.linear_q", "output_layer"]])
def test_intended_targets_pass_silently(asr, targets):
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeftWarning)
        assert espnet_peft.plan_peft(asr, {"method": "lora", "target_modules": targets, "rank": 2}).rows
