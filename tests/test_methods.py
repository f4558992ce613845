"""The rules of the method specification (methods.md), checked on real (tiny) ESPnet encoders for every method."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import espnet_peft
from espnet_peft.methods import DoRALinear, LoRALinear, PiSSALinear, SubspaceRotationLinear
from espnet_peft.methods.ssvd_o import _SubspaceLinear, path_costs, rotation, skew

from conftest import ALL_LINEAR_TARGETS, ENCODERS, clone, encode, randomize_trainables

MATRIX_METHODS = ["lora", "dora", "pissa", "ssvd", "ssvd_o"]
BUDGET = 6000


def toy_loss(out):
    """A loss with a non-zero gradient through the final LayerNorm (unlike out.pow(2).mean())."""
    g = torch.Generator().manual_seed(11)
    return (out * torch.randn(out.shape, generator=g)).sum()


def config(method, kind, **kw):
    cfg = {"method": method, "target_modules": ALL_LINEAR_TARGETS[kind], "budget": BUDGET}
    cfg.update(kw)
    return cfg


@pytest.mark.parametrize("method", MATRIX_METHODS)
def test_identity_at_init(method, encoder_kind, features):
    enc = ENCODERS[encoder_kind]()
    ref = encode(enc, *features)
    plan = espnet_peft.apply_peft(enc, config(method, encoder_kind))
    out = encode(enc, *features)
    rel = (out - ref).norm() / ref.norm()
    assert rel < 1e-5, f"{method}: relative error {rel:.2e} at initialisation"
    assert len(plan.rows) == len(ALL_LINEAR_TARGETS[encoder_kind]) * 2


@pytest.mark.parametrize("method", MATRIX_METHODS)
def test_trainable_equals_plan_and_fits_budget(method, encoder_kind):
    enc = ENCODERS[encoder_kind]()
    plan = espnet_peft.apply_peft(enc, config(method, encoder_kind))
    trainable = sum(p.numel() for p in enc.parameters() if p.requires_grad)
    assert trainable == plan.total <= BUDGET
    # the planner spends the budget: leftovers are below one unit of the largest module
    assert plan.total > 0.8 * BUDGET
    assert plan.fraction == pytest.approx(plan.total / plan.model_params)
    assert all(not p.requires_grad for n, p in enc.named_parameters() if n.endswith((".weight", ".bias")))


@pytest.mark.parametrize("make", [lambda lin: LoRALinear(lin, 4), lambda lin: DoRALinear(lin, 4),
                                  lambda lin: PiSSALinear(lin, 4), lambda lin: SubspaceRotationLinear(lin, 5),
                                  lambda lin: SubspaceRotationLinear(lin, 5, 3)],
                         ids=["lora", "dora", "pissa", "ssvd", "ssvd_o"])
def test_delta_is_the_output_change_and_the_weight_change(make):
    """Every wrapper's three views agree after training-like updates: ``forward(x) = W x + b +
    delta(x)`` and ``delta(x) = x delta_weight()^T`` (DoRA's delta is its whole rescaled change,
    not LoRA's branch)."""
    torch.manual_seed(0)
    layer = make(nn.Linear(12, 10).double())
    layer.ensure_initialized()
    with torch.no_grad():
        for n, p in layer.named_parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(7, 12, dtype=torch.float64)
    frozen = nn.functional.linear(x, layer.weight, layer.bias)
    with torch.no_grad():
        assert torch.allclose(layer(x), frozen + layer.delta(x), atol=1e-10)
        assert torch.allclose(layer.delta(x), x @ layer.delta_weight().t(), atol=1e-10)
        assert layer.delta(x).abs().max() > 1e-3  # the updates moved it


@pytest.mark.parametrize("method", MATRIX_METHODS)
def test_merge_matches_wrapped_after_updates(method, encoder_kind, features):
    enc = ENCODERS[encoder_kind]()
    espnet_peft.apply_peft(enc, config(method, encoder_kind))
    randomize_trainables(enc)
    wrapped = encode(enc, *features)
    espnet_peft.merge_peft(enc)
    assert not any(type(m).__module__.startswith("espnet_peft") for m in enc.modules())
    merged = encode(enc, *features)
    assert torch.allclose(merged, wrapped, atol=1e-4), (merged - wrapped).abs().max()
    assert all(p.requires_grad for p in enc.parameters())
    # the merged model's state-dict keys are the stock model's
    assert set(enc.state_dict()) == set(ENCODERS[encoder_kind]().state_dict())


@pytest.mark.parametrize("method", MATRIX_METHODS)
def test_eval_train_cycles_never_drift(method, encoder_kind, features):
    """The review of an ESPnet SSVD pull request found DoRA merges drifting across eval/train cycles
    (a merge-on-eval, unmerge-on-train scheme subtracting what it added). Here: eval/train toggles
    without updates leave the eval output bit for bit unchanged, and after cycles with updates the
    merged model still equals the wrapped one."""
    enc = ENCODERS[encoder_kind]()
    espnet_peft.apply_peft(enc, config(method, encoder_kind))
    randomize_trainables(enc)
    enc.eval()
    with torch.no_grad():
        first = encode(enc, *features)
    for _ in range(5):
        enc.train()
        enc.eval()
    with torch.no_grad():
        assert torch.equal(encode(enc, *features), first)
    opt = torch.optim.SGD([p for p in enc.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        enc.train()
        toy_loss(encode(enc, *features)).backward()
        opt.step()
        opt.zero_grad()
        enc.eval()
    with torch.no_grad():
        wrapped = encode(enc, *features)
    assert not torch.allclose(wrapped, first, atol=1e-6)  # the updates moved it
    espnet_peft.merge_peft(enc)
    with torch.no_grad():
        merged = encode(enc, *features)
    assert torch.allclose(merged, wrapped, atol=1e-4), (merged - wrapped).abs().max()


@pytest.mark.parametrize("method", MATRIX_METHODS)
def test_adapter_state_round_trip(method, encoder_kind, features):
    enc = ENCODERS[encoder_kind]()
    espnet_peft.apply_peft(enc, config(method, encoder_kind))
    randomize_trainables(enc)
    want = encode(enc, *features)
    state = espnet_peft.peft_state_dict(enc)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    fresh = ENCODERS[encoder_kind]()  # the same pretrained weights, wrapped anew
    espnet_peft.apply_peft(fresh, config(method, encoder_kind))
    assert not torch.allclose(encode(fresh, *features), want, atol=1e-4)
    espnet_peft.load_peft_state_dict(fresh, state)
    assert torch.allclose(encode(fresh, *features), want, atol=1e-5)


@pytest.mark.parametrize("method", MATRIX_METHODS)
def test_frozen_weights_never_mutated(method, encoder_kind, features):
    enc = ENCODERS[encoder_kind]()
    frozen_before = {n: p.detach().clone() for n, p in enc.named_parameters()}
    buffers_before = {n: b.detach().clone() for n, b in enc.named_buffers()}
    espnet_peft.apply_peft(enc, config(method, encoder_kind))
    opt = torch.optim.AdamW([p for p in enc.parameters() if p.requires_grad], lr=1e-2)
    for step in range(3):
        enc.train()  # like ESPnet's trainer: train / eval toggles every epoch
        loss = toy_loss(encode(enc, *features))
        loss.backward()
        opt.step()
        opt.zero_grad()
        enc.eval()
        with torch.no_grad():
            encode(enc, *features)
    names = dict(enc.named_parameters())
    for n, before in frozen_before.items():
        if n in names and not names[n].requires_grad and method != "pissa":
            assert torch.equal(names[n], before), f"{n} changed"
    for n, before in buffers_before.items():  # BatchNorm statistics of the frozen model
        assert torch.equal(dict(enc.named_buffers())[n], before), f"buffer {n} changed"
    # PiSSA's stored weight is the residual, fixed at initialisation: never changed by training
    if method == "pissa":
        for m in enc.modules():
            if isinstance(m, PiSSALinear):
                res = m.weight.detach().clone()
                assert torch.equal(res, m.weight)


def test_training_changes_output(encoder_kind, features):
    """The adapters really train (a test of the tests: the identities above are not vacuous)."""
    for method in MATRIX_METHODS:
        enc = ENCODERS[encoder_kind]()
        ref = encode(enc, *features).detach()
        espnet_peft.apply_peft(enc, config(method, encoder_kind))
        opt = torch.optim.SGD([p for p in enc.parameters() if p.requires_grad], lr=0.05)
        for _ in range(2):
            toy_loss(encode(enc, *features)).backward()
            opt.step()
            opt.zero_grad()
        assert not torch.allclose(encode(enc, *features), ref, atol=1e-4), method


# --------------------------------------------------------------------------- formulas
def _linear(seed=0, d_out=24, d_in=40, bias=True):
    torch.manual_seed(seed)
    return nn.Linear(d_in, d_out, bias=bias)


def test_lora_formula_and_loralib_names():
    base = _linear()
    w0 = base.weight.detach().clone()
    m = espnet_peft.get_method("lora").wrap(base, {"r": 4}, {"alpha": 8, "rslora": False, "dropout": 0.0})
    assert isinstance(m, LoRALinear)
    assert m.lora_A.shape == (4, 40) and m.lora_B.shape == (24, 4)  # loralib shapes
    assert torch.count_nonzero(m.lora_B) == 0
    # A ~ Kaiming-uniform(a=sqrt(5)): bound 1/sqrt(d_in)
    assert m.lora_A.abs().max() <= 1 / math.sqrt(40) + 1e-6
    with torch.no_grad():
        m.lora_B.normal_()
    x = torch.randn(5, 40)
    want = x @ (w0 + (8 / 4) * m.lora_B @ m.lora_A).t() + base.bias
    assert torch.allclose(m(x), want, atol=1e-5)
    rs = espnet_peft.get_method("lora").wrap(_linear(), {"r": 4}, {"alpha": 8, "rslora": True})
    assert rs.scaling == pytest.approx(8 / 2)


def test_lora_dropout_only_on_branch():
    base = _linear()
    m = espnet_peft.get_method("lora").wrap(base, {"r": 4}, {"dropout": 0.9}).train()
    x = torch.randn(5, 40)
    assert torch.allclose(m(x), base(x), atol=1e-6)  # B = 0: dropout never touches W x


def test_dora_formula_with_detached_norm():
    base = _linear(1)
    w0 = base.weight.detach().clone()
    m = espnet_peft.get_method("dora").wrap(base, {"r": 3}, {"alpha": 6})
    assert isinstance(m, DoRALinear)
    assert torch.allclose(m.lora_magnitude, w0.norm(dim=1))
    with torch.no_grad():
        m.lora_B.normal_(std=0.3)
        m.lora_magnitude.mul_(torch.linspace(0.5, 1.5, 24))
    s = 6 / 3
    v = w0 + s * m.lora_B @ m.lora_A
    w_prime = m.lora_magnitude.unsqueeze(1) * v / v.norm(dim=1, keepdim=True)
    x = torch.randn(7, 40)
    assert torch.allclose(m(x), x @ w_prime.t() + base.bias, atol=1e-5)
    assert torch.allclose(m.merged_weight(), w_prime, atol=1e-5)
    # the norm is a constant for back-propagation: d/dB matches the formula with n detached
    x.requires_grad_(False)
    m.zero_grad()
    m(x).sum().backward()
    gB = m.lora_B.grad.clone()
    B = m.lora_B.detach().clone().requires_grad_(True)
    n = (w0 + s * B.detach() @ m.lora_A.detach()).norm(dim=1)
    y = (m.lora_magnitude.detach() / n) * (x @ (w0 + s * B @ m.lora_A.detach()).t())
    y.sum().backward()
    assert torch.allclose(gB, B.grad, atol=1e-5)
    assert m.row_norm().requires_grad is False


def test_pissa_residual_plus_factors_is_w():
    base = _linear(2)
    w0 = base.weight.detach().clone()
    for svd in ("full", "randomized"):
        m = espnet_peft.get_method("pissa").wrap(_linear(2), {"r": 5}, {"alpha": 10, "svd": svd, "svd_niter": 6})
        assert torch.allclose(m.weight + m.scaling * m.lora_B @ m.lora_A, w0, atol=1e-6)
        u, s, vh = torch.linalg.svd(w0.double())
        top = (u[:, :5] * s[:5]) @ vh[:5]
        assert torch.allclose((m.scaling * m.lora_B @ m.lora_A).double(), top, atol=1e-4), svd
    assert torch.equal(base.weight, w0)  # the pretrained tensor itself is untouched


def test_pissa_randomized_is_deterministic():
    a = espnet_peft.get_method("pissa").wrap(_linear(3), {"r": 4}, {"svd": "randomized", "seed": 5})
    b = espnet_peft.get_method("pissa").wrap(_linear(3), {"r": 4}, {"svd": "randomized", "seed": 5})
    assert torch.equal(a.lora_A, b.lora_A) and torch.equal(a.weight, b.weight)


# --------------------------------------------------------------------------- SSVD / SSVD-O
def _ssvd(k_in, k_out, directions="top", seed=4, **kw):
    base = _linear(seed, d_out=20, d_in=30)
    method = "ssvd_o"
    opts = {"directions": directions, **kw}
    return base, espnet_peft.get_method(method).wrap(base, {"k_in": k_in, "k_out": k_out}, opts)


def test_cayley_rotation_is_orthogonal():
    torch.manual_seed(0)
    for k in (2, 7, 40):
        vec = torch.randn(k * (k - 1) // 2)
        r = rotation(vec, k, "cayley")
        assert torch.allclose(r @ r.t(), torch.eye(k), atol=1e-5)
        s = skew(vec, k)
        assert torch.allclose(s, -s.t())
    r1 = rotation(torch.randn(3) * 0.5, 3, "first_order")
    assert not torch.allclose(r1 @ r1.t(), torch.eye(3), atol=1e-3)  # named as an approximation


@pytest.mark.parametrize("directions", ["top", "tail"])
@pytest.mark.parametrize("k_in,k_out", [(6, 0), (6, 4), (3, 7), (0, 5)])
def test_ssvd_update_lies_in_planned_subspaces(directions, k_in, k_out):
    base, m = _ssvd(k_in, k_out, directions)
    w0 = base.weight.detach().double()
    with torch.no_grad():
        m.ssvd_S_in.normal_()
        m.ssvd_S_out.normal_()
        m.ssvd_delta.normal_()
    p = max(k_in, k_out)
    u, s, vh = torch.linalg.svd(w0)
    sl = slice(0, p) if directions == "top" else slice(min(w0.shape) - p, min(w0.shape))
    U, V = u[:, sl], vh[sl].t()
    dw = (m.merged_weight().double() - w0)
    assert dw.abs().max() > 1e-3
    # W' - W = U_p X V_p^T: projecting onto the planned subspaces keeps all of it
    assert torch.allclose(U @ (U.t() @ dw @ V) @ V.t(), dw, atol=1e-5)
    # and the formula: U_p [R_out diag(sigma + delta) R_in - diag(sigma)] V_p^T
    r_in, r_out = m.rotation_in().double(), m.rotation_out().double()
    assert torch.allclose(r_in @ r_in.t(), torch.eye(p, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(r_out @ r_out.t(), torch.eye(p, dtype=torch.float64), atol=1e-5)
    sig = m.ssvd_sigma.double()
    core = r_out @ torch.diag(sig + m.ssvd_delta.double()) @ r_in - torch.diag(sig)
    assert torch.allclose(m.ssvd_U.double() @ core @ m.ssvd_V.double().t(), dw, atol=1e-5)
    assert torch.allclose(sig, s[sl].to(sig), atol=1e-5)


def test_ssvd_param_counts():
    _, m = _ssvd(6, 4)
    assert sum(p.numel() for p in m.parameters() if p.requires_grad) == 15 + 6 + 6
    plan_ssvd = espnet_peft.get_method("ssvd")
    assert plan_ssvd.count((20, 30), {"k": 6}, {}) == 6 * 5 // 2 + 6


@pytest.mark.parametrize("dense", [False, True])
def test_subspace_autograd_matches_dense_reference(dense):
    torch.manual_seed(0)
    d_out, d_in, p, T = 9, 7, 5, 11
    x = torch.randn(T, d_in, dtype=torch.float64, requires_grad=True)
    w = torch.randn(d_out, d_in, dtype=torch.float64)
    b = torch.randn(d_out, dtype=torch.float64)
    u = torch.linalg.qr(torch.randn(d_out, p, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(d_in, p, dtype=torch.float64))[0]
    m = torch.randn(p, p, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, m: _SubspaceLinear.apply(x, w, b, u, v, m, dense), (x, m))
    y = _SubspaceLinear.apply(x, w, b, u, v, m, dense)
    assert torch.allclose(y, x @ (w + u @ m @ v.t()).t() + b)


def test_path_choice_follows_cost():
    few = path_costs(8, 1024, 1024, 400, training=True)
    many = path_costs(8000, 1024, 1024, 400, training=True)
    assert few["lowrank"] < few["dense"] and many["dense"] < many["lowrank"]
    _, m = _ssvd(6, 0)
    assert m.pick_path(1, True) == "lowrank"
    assert m.pick_path(100000, True) == "dense"


def test_ssvd_forward_paths_agree(features):
    base, m = _ssvd(8, 5)
    with torch.no_grad():
        m.ssvd_S_in.normal_()
        m.ssvd_delta.normal_()
    x = torch.randn(4, 6, 30)
    outs = {}
    for path in ("lowrank", "dense"):
        m.forward_path = path
        outs[path] = m(x)
    assert torch.allclose(outs["lowrank"], outs["dense"], atol=1e-5)


# --------------------------------------------------------------------------- initialisation
def _init_matches(layer, w):
    """Whether a wrapper's weight-derived initial tensors were computed from ``w``."""
    if isinstance(layer, DoRALinear):
        return torch.allclose(layer.lora_magnitude, w.norm(dim=1), atol=1e-5)
    if isinstance(layer, PiSSALinear):
        return torch.allclose(layer.weight + layer.scaling * layer.pissa_B0 @ layer.pissa_A0, w, atol=1e-5)
    if isinstance(layer, SubspaceRotationLinear):
        s = torch.linalg.svdvals(w.double())[: layer.p].to(w)
        return torch.allclose(layer.ssvd_sigma, s, atol=1e-5)
    raise AssertionError(type(layer))


@pytest.mark.parametrize("method", ["dora", "pissa", "ssvd", "ssvd_o"])
def test_init_sees_weights_loaded_after_wrapping_when_lazy(method, features):
    """Rule 4: with ``init: lazy`` weights loaded after wrapping (ESPnet --init_param) are the
    ones the SVD / norm initialisation uses; eager init on the random weights is not."""
    pretrained = ENCODERS["ebf"](seed=1)
    ref = encode(pretrained, *features)
    loaded = dict(pretrained.named_modules())
    for init, consistent in (("lazy", True), ("eager", False)):
        model = ENCODERS["ebf"](seed=99)  # random weights, as ESPnet builds them
        espnet_peft.apply_peft(model, config(method, "ebf", init=init))
        missing, unexpected = model.load_state_dict(pretrained.state_dict(), strict=False)
        assert not unexpected and all(k.split(".")[-1].startswith(("lora_", "ssvd_", "pissa_")) for k in missing)
        out = encode(model, *features)  # a lazy wrapper initialises here
        layers = [(n, m) for n, m in model.named_modules() if isinstance(m, espnet_peft.methods.AdaptedLinear)]
        for n, layer in layers:
            w = loaded[n].weight.detach()
            assert _init_matches(layer, w) == consistent, (init, n)
        if consistent:
            assert (out - ref).norm() / ref.norm() < 1e-5


def test_wrapper_shares_frozen_tensor_and_keys():
    enc = ENCODERS["ebf"]()
    keys = set(enc.state_dict())
    w = enc.encoders[0].attn.linear_q.weight
    espnet_peft.apply_peft(enc, config("lora", "ebf"))
    assert enc.encoders[0].attn.linear_q.weight is w
    assert keys <= set(enc.state_dict())
    assert {k for k in enc.state_dict() if k not in keys} == {k for k in enc.state_dict() if ".lora_" in k}


def test_ssvd_basis_mismatch_is_refused(features):
    enc = ENCODERS["ebf"]()
    espnet_peft.apply_peft(enc, config("ssvd", "ebf"))
    state = espnet_peft.peft_state_dict(enc)
    other = ENCODERS["ebf"](seed=5)
    espnet_peft.apply_peft(other, config("ssvd", "ebf"))
    with pytest.raises(espnet_peft.PeftError, match="another base model"):
        espnet_peft.load_peft_state_dict(other, state)


def test_merged_model_is_a_plain_copy(features):
    enc = ENCODERS["conformer"]()
    wrapped = clone(enc)
    espnet_peft.apply_peft(wrapped, config("ssvd_o", "conformer"))
    randomize_trainables(wrapped)
    merged = espnet_peft.merge_peft(clone(wrapped))
    stock = ENCODERS["conformer"]()
    stock.load_state_dict(merged.state_dict())  # strict: the stock class loads it
    assert torch.allclose(encode(stock, *features), encode(wrapped, *features), atol=1e-4)


@pytest.mark.parametrize("shape", [(24, 40), (40, 24)])
@pytest.mark.parametrize("directions", ["top", "tail"])
def test_svd_modes_find_the_same_subspaces(shape, directions):
    from espnet_peft.svd import principal_subspace

    torch.manual_seed(1)
    w = torch.randn(*shape) @ torch.diag(torch.linspace(2.0, 0.1, shape[1]))
    u_ref, s_ref, v_ref = principal_subspace(w, 6, directions, "full")
    modes = ["gram"] + (["randomized"] if directions == "top" else [])
    for mode in modes:
        u, s, v = principal_subspace(w, 6, directions, mode, niter=8)
        tol = 1e-4 if mode == "gram" else 5e-2
        assert torch.allclose(s, s_ref, atol=tol * s_ref[0]), mode
        # same subspaces (projectors agree), sign-canonical bases agree column by column
        assert torch.allclose(u @ u.t(), u_ref @ u_ref.t(), atol=tol), mode
        assert torch.allclose(v @ v.t(), v_ref @ v_ref.t(), atol=tol), mode
        assert torch.allclose(u.t() @ u, torch.eye(6), atol=1e-5)


def test_gram_falls_back_on_rank_deficient_weights():
    from espnet_peft.svd import principal_subspace

    w = torch.randn(30, 3) @ torch.randn(3, 20)  # rank 3
    u, s, v = principal_subspace(w, 5, "tail", "gram")
    assert torch.all(torch.isfinite(u)) and torch.allclose(u.t() @ u, torch.eye(5), atol=1e-5)


def test_dora_norm_cache_follows_weight_writes():
    base = _linear(5)
    m = espnet_peft.get_method("dora").wrap(base, {"r": 2}, {})
    x = torch.randn(3, 40)
    m(x)
    new = torch.randn_like(m.weight)
    m.load_state_dict({**m.state_dict(), "weight": new})  # an in-place write into the frozen tensor
    assert torch.allclose(m.row_norm(), new.norm(dim=1), atol=1e-5)


def fingerprints_match(a, b, rtol: float = 1e-5) -> bool:
    """True if two fingerprints describe the same tensor up to float rounding."""
    a, b = tuple(a), tuple(b)
    if len(a) != 4 or len(b) != 4 or a[0] != b[0]:
        return False
    scale = (max(a[2], 0.0) * a[0]) ** 0.5  # bounds |sum| and |ramp sum|
    return all(abs(x - y) <= rtol * (abs(x) + abs(y) + scale) for x, y in zip(a[1:], b[1:]))


@pytest.mark.parametrize("n", [5, 3584, 3584 * 3 + 11, 4096 * 257])
def test_fingerprint_matches_a_float64_reference(n):
    from espnet_peft.fingerprint import fingerprint

    torch.manual_seed(n)
    x = torch.randn(n) + 0.3
    x64 = x.double()
    ramp = ((torch.arange(n, dtype=torch.float64) % 7) - 3) @ x64
    ref = (float(n), float(x64.sum()), float(x64 @ x64), float(ramp))
    got = fingerprint(x)
    assert got[0] == ref[0]
    for a, b in zip(got[1:], ref[1:]):
        assert abs(a - b) <= 1e-6 * (abs(b) + n ** 0.5), (a, b)
    # another tensor of the same size, or the same values in another order, do not match
    assert not fingerprints_match(got, fingerprint(torch.randn(n) + 0.3))
    if n > 5:
        assert not fingerprints_match(got, fingerprint(x.roll(1)))
    assert fingerprints_match(fingerprint(x.half()), fingerprint(x.half().float()))


@pytest.mark.parametrize("shape", [(300, 80), (80, 300)])
def test_randomized_svd_is_exact_on_a_spectral_gap(shape):
    """With a gap after the k-th singular value the range finder converges to the true triplets
    (float32 weight, float32 route), and a rank below k falls back to a full SVD."""
    from espnet_peft.svd import principal_subspace

    torch.manual_seed(3)
    q, k = min(shape), 12
    a, _ = torch.linalg.qr(torch.randn(shape[0], q, dtype=torch.float64))
    b, _ = torch.linalg.qr(torch.randn(shape[1], q, dtype=torch.float64))
    s = torch.cat([torch.linspace(3.0, 1.0, k), torch.linspace(0.2, 0.01, q - k)]).double()
    w = ((a * s) @ b.t()).float()
    u, sv, v = principal_subspace(w, k, "top", "randomized", niter=2)
    assert u.dtype == torch.float32 and u.shape == (shape[0], k) and v.shape == (shape[1], k)
    assert torch.allclose(sv.double(), s[:k], atol=1e-5 * 3)
    a_k, b_k = a[:, :k].float(), b[:, :k].float()
    assert torch.allclose(u @ u.t(), a_k @ a_k.t(), atol=1e-4) and torch.allclose(v @ v.t(), b_k @ b_k.t(), atol=1e-4)
    assert torch.allclose((u.t() @ w @ v), torch.diag(sv), atol=1e-4)
    low = (torch.randn(shape[0], 3) @ torch.randn(3, shape[1]))  # rank 3 < k
    u, sv, v = principal_subspace(low, 5, "top", "randomized")
    assert torch.all(torch.isfinite(u)) and torch.allclose(u.t() @ u, torch.eye(5), atol=1e-5)
