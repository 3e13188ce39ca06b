"""Muon: orthogonalize against the SVD and a naive loop, the update against one written out by hand, its AdamW
groups against ``AdamW``, the parameter split of a TransformerLM, state round trip, skipped and bad inputs."""

import io

import pytest
import torch
from torch import nn

from cs336_lm.nn import PRESETS, TransformerLM
from cs336_lm.nn.functional import cross_entropy
from cs336_lm.optim import AdamW, Muon, muon_param_groups
from cs336_lm.optim.muon import NS_COEFFICIENTS, orthogonalize, orthogonalize_all

# The toy tensors are far too small to split across threads.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPES = [(48, 160), (160, 48), (96, 96), (7, 5), (1, 8)]  # wide, tall, square, small, a single row


def naive_orthogonalize(G: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """The quintic Newton–Schulz iteration on one matrix, written out plainly in G's dtype."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.clone()
    tall = X.shape[0] > X.shape[1]
    if tall:
        X = X.T
    X = X / (X.pow(2).sum().sqrt() + eps)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + b * (A @ X) + c * (A @ (A @ X))
    return X.T if tall else X


def test_coefficients():
    assert NS_COEFFICIENTS == (3.4445, -4.7750, 2.0315)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_orthogonalize_against_svd(shape):
    torch.manual_seed(0)
    G = torch.randn(shape, dtype=torch.float64)
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    ortho = orthogonalize(G.float()).double()
    # ortho ≈ U S' Vᵀ: in G's singular bases it is diagonal, S' in the Newton–Schulz band
    inner = U.T @ ortho @ Vh.T
    s_prime = torch.diagonal(inner)
    torch.testing.assert_close(inner, torch.diag(s_prime), rtol=0, atol=1e-5)
    above = S / G.norm() >= 0.002  # the values 5 steps bring into the band
    assert above.sum() >= 0.9 * len(S)
    assert s_prime[above].min() >= 0.68 and s_prime[above].max() <= 1.21
    assert s_prime.max() <= 1.21
    ref = U @ Vh
    cosine = (ortho * ref).sum() / (ortho.norm() * ref.norm())
    assert cosine > 0.97
    assert (ortho - ref).norm() / ref.norm() < 0.33  # the band allows |1 − σ'| ≤ 0.32 (a single row: 0.30)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_orthogonalize_against_naive_loop(shape):
    torch.manual_seed(1)
    G = torch.randn(shape, dtype=torch.float64)
    expected = naive_orthogonalize(G)
    torch.testing.assert_close(orthogonalize(G, dtype=torch.float64), expected, rtol=0, atol=1e-12)
    # fp32, the CPU default: one fp32 rounding away (measured ≤ 1.3e-6 on entries of size ≤ 1)
    ours = orthogonalize(G.float())
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), expected, rtol=0, atol=5e-6)
    for steps in (1, 3):
        torch.testing.assert_close(orthogonalize(G, steps, dtype=torch.float64), naive_orthogonalize(G, steps))


def test_orthogonalize_batched_matrices_each_alone():
    torch.manual_seed(2)
    G = torch.randn(2, 3, 24, 10)
    out = orthogonalize(G)
    assert out.shape == G.shape
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out[i, j], orthogonalize(G[i, j]), rtol=0, atol=1e-6)


def test_orthogonalize_all_equals_one_matrix_at_a_time():
    """Batched by shape (tall ones transposed in with the wide): the same as orthogonalizing each alone."""
    torch.manual_seed(8)
    shapes = [(24, 10), (10, 24), (16, 16), (24, 10), (2, 10, 24), (16, 16), (7, 5), (10, 24)]
    updates = [torch.randn(shape) for shape in shapes] + [torch.randn(10, 24, dtype=torch.float64)]
    out = orthogonalize_all(updates, 3)
    for u, o in zip(updates, out, strict=True):
        assert o.shape == u.shape and o.dtype == u.dtype
        torch.testing.assert_close(o, orthogonalize(u, 3), rtol=0, atol=1e-6)
    assert orthogonalize_all([]) == []


def test_orthogonalize_ignores_scale_and_keeps_dtype():
    # why the lerp form of momentum (U scaled by 1 − μ) orthogonalizes to the same matrix
    torch.manual_seed(3)
    G = torch.randn(16, 40)
    torch.testing.assert_close(orthogonalize(0.05 * G), orthogonalize(G), rtol=0, atol=1e-5)
    assert orthogonalize(G.double()).dtype == torch.float64
    assert orthogonalize(G.bfloat16()).dtype == torch.bfloat16
    assert torch.equal(orthogonalize(torch.zeros(4, 6)), torch.zeros(4, 6))


def test_orthogonalize_rejects_bad_input():
    with pytest.raises(ValueError, match="steps"):
        orthogonalize(torch.ones(3, 3), steps=0)
    with pytest.raises(ValueError, match="matrix"):
        orthogonalize(torch.ones(3))


@pytest.mark.gpu
def test_orthogonalize_cuda_runs_bf16_close_to_fp32():
    torch.manual_seed(4)
    G = torch.randn(256, 768)
    ours = orthogonalize(G.cuda())
    assert ours.dtype == torch.float32
    ref = orthogonalize(G)
    assert ((ours.cpu() - ref).norm() / ref.norm()).item() < 0.03
    torch.testing.assert_close(ours.cpu(), orthogonalize(G, dtype=torch.bfloat16), rtol=0, atol=0.02)


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("rule", ["rms", "spectral"])
def test_two_steps_by_hand(nesterov, rule):
    torch.manual_seed(5)
    tall, wide = torch.randn(6, 4, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    params = [nn.Parameter(tall.clone()), nn.Parameter(wide.clone())]
    grads = [[torch.randn_like(tall), torch.randn_like(wide)] for _ in range(2)]
    lr, mu, wd = 0.1, 0.9, 0.3
    opt = Muon(params, lr=lr, momentum=mu, weight_decay=wd, nesterov=nesterov, shape_scale=rule)
    scales = [0.2 * 6**0.5, 0.2 * 5**0.5] if rule == "rms" else [1.5**0.5, 1.0]
    expected = [tall.clone(), wide.clone()]
    buffers = [torch.zeros_like(tall), torch.zeros_like(wide)]
    for step_grads in grads:
        for i, g in enumerate(step_grads):
            params[i].grad = g.clone()
            buffers[i] = mu * buffers[i] + g
            u = g + mu * buffers[i] if nesterov else buffers[i]
            expected[i] = expected[i] * (1 - lr * wd) - lr * scales[i] * orthogonalize(u)
        opt.step()
    for p, e, b in zip(params, expected, buffers, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=0, atol=1e-12)
        torch.testing.assert_close(opt.state[p]["momentum_buffer"], b, rtol=0, atol=1e-12)


def _debug_model(seed: int = 0) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(**PRESETS["debug"])


def test_param_groups_split_a_transformer():
    model = _debug_model()
    groups = muon_param_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    got = {g["name"]: {names[id(p)] for p in g["params"]} for g in groups}
    layers = range(PRESETS["debug"]["num_layers"])
    projections = ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.output_proj", "ffn.w1", "ffn.w2", "ffn.w3")
    assert got["muon"] == {f"layers.{i}.{m}.weight" for i in layers for m in projections}
    assert got["embeddings"] == {"token_embeddings.weight"}
    assert got["head"] == {"lm_head.weight"}
    assert got["gains"] == {f"layers.{i}.{n}.weight" for i in layers for n in ("ln1", "ln2")} | {"ln_final.weight"}
    assert [g["use_muon"] for g in groups] == [True, False, False, False] and groups[3]["weight_decay"] == 0.0
    every = [id(p) for g in groups for p in g["params"]]
    assert len(every) == len(set(every)) == len(names)  # each parameter in exactly one group
    assert all("lr" not in g for g in groups)
    opt = Muon(groups, lr=1e-3, weight_decay=0.1, adam_lr=2e-3)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.1, 0.1, 0.0]
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 2e-3, 2e-3, 2e-3]


def test_param_groups_carry_their_own_rates():
    rates = {"muon_lr": 0.02, "embed_lr": 0.3, "head_lr": 0.004, "gain_lr": 0.05}
    groups = muon_param_groups(_debug_model(), **rates)
    assert {g["name"]: g["lr"] for g in groups} == {"muon": 0.02, "embeddings": 0.3, "head": 0.004, "gains": 0.05}
    opt = Muon(groups, lr=1e-3, adam_lr=2e-3)  # a group's own rate wins over the defaults of its kind
    assert [g["lr"] for g in opt.param_groups] == [0.02, 0.3, 0.004, 0.05]
    partial = muon_param_groups(_debug_model(), head_lr=0.004)
    assert [g.get("lr") for g in partial] == [None, None, 0.004, None]


def test_a_tied_head_goes_with_the_embeddings():
    model = _debug_model()
    model.lm_head.weight = model.token_embeddings.weight  # one tensor, two modules
    groups = muon_param_groups(model, embed_lr=0.3, head_lr=0.004)
    assert [g["name"] for g in groups] == ["muon", "embeddings", "gains"]
    assert groups[1]["params"] == [model.token_embeddings.weight] and groups[1]["lr"] == 0.3


def test_newton_schulz_dtype_is_the_optimizers_choice():
    torch.manual_seed(3)
    w0, g = torch.randn(12, 20), torch.randn(12, 20)
    for ns_dtype in (None, torch.bfloat16):
        w = nn.Parameter(w0.clone())
        opt = Muon([w], lr=0.1, weight_decay=0.0, nesterov=False, ns_dtype=ns_dtype)
        w.grad = g.clone()
        opt.step()
        expected = w0.add(orthogonalize(g, dtype=ns_dtype), alpha=-0.1 * (0.2 * 20**0.5))
        assert torch.equal(w.detach(), expected)
        assert "ns_dtype" not in opt.state_dict()["param_groups"][0]  # the run's precision, not saved
    bf16 = orthogonalize(g, dtype=torch.bfloat16)
    assert not torch.equal(bf16, orthogonalize(g)) and (bf16 - orthogonalize(g)).norm() / bf16.norm() < 0.05


def test_param_groups_of_a_wrapped_model_and_frozen_parameters():
    model = _debug_model()
    model.ln_final.weight.requires_grad_(False)
    wrapper = nn.Module()
    wrapper.module = model  # names gain a "module." prefix, as under DDP
    groups = muon_param_groups(wrapper)
    assert len(groups[0]["params"]) == 7 * PRESETS["debug"]["num_layers"]
    assert all(p is not model.ln_final.weight for g in groups for p in g["params"])


@pytest.mark.parametrize("foreach", [False, True])
def test_adamw_groups_equal_adamw_bitwise(foreach):
    model, twin = _debug_model(), _debug_model()
    hyper = {"lr": 3e-3, "weight_decay": 0.1}
    muon = Muon(muon_param_groups(model), adam_betas=(0.9, 0.95), adam_eps=1e-6, foreach=foreach, **hyper)
    twin_groups = [g for g in muon_param_groups(twin) if not g["use_muon"]]
    adamw = AdamW(twin_groups, betas=(0.9, 0.95), eps=1e-6, foreach=foreach, **hyper)
    torch.manual_seed(6)
    for step in range(4):
        for g in (*muon.param_groups, *adamw.param_groups):
            g["lr"] = hyper["lr"] * (1 - step / 8)  # a schedule at work
        for p, q in zip(model.parameters(), twin.parameters(), strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        muon.step()
        adamw.step()
    start = _debug_model()
    for (name, p), q, p0 in zip(model.named_parameters(), twin.parameters(), start.parameters(), strict=True):
        assert not torch.equal(p, p0), name  # every parameter moved
        if p.ndim == 2 and name.startswith("layers."):
            assert not torch.equal(p, q), name  # the Muon matrices took Muon's steps, the twin's AdamW's
        else:
            assert torch.equal(p, q), name


def _train(model, opt, steps, start=0):
    torch.manual_seed(7)
    tokens = torch.randint(0, PRESETS["debug"]["vocab_size"], (4, 17))
    losses = []
    for it in range(start, start + steps):
        for g in opt.param_groups:
            g["lr"] = 1e-2 * (1 - it / 20)
        opt.zero_grad()
        loss = cross_entropy(model(tokens[:, :-1]), tokens[:, 1:])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_state_dict_round_trip_continues_bitwise():
    hyper = {"weight_decay": 0.1, "adam_betas": (0.9, 0.95)}
    model = _debug_model()
    opt = Muon(muon_param_groups(model), **hyper)
    losses = _train(model, opt, 6)
    assert losses[-1] < losses[0] - 0.5  # it learns the batch

    first = _debug_model()
    first_opt = Muon(muon_param_groups(first), **hyper)
    _train(first, first_opt, 3)
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": first_opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    resumed = _debug_model(seed=1)
    resumed.load_state_dict(saved["model"])
    resumed_opt = Muon(muon_param_groups(resumed), lr=0.5, momentum=0.5)  # the saved settings replace these
    resumed_opt.load_state_dict(saved["opt"])
    assert resumed_opt.param_groups[0]["momentum"] == 0.95
    assert [g["name"] for g in resumed_opt.param_groups] == ["muon", "embeddings", "head", "gains"]
    _train(resumed, resumed_opt, 3, start=3)
    for (name, p), q in zip(model.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_parameters_without_gradient_or_with_zero_gradient():
    w, idle, gain = nn.Parameter(torch.ones(4, 3)), nn.Parameter(torch.ones(4, 3)), nn.Parameter(torch.ones(3))
    opt = Muon([{"params": [w, idle]}, {"params": [gain], "use_muon": False}], lr=0.1, weight_decay=0.5)
    w.grad = torch.zeros(4, 3)
    opt.step()
    assert torch.equal(w, torch.full((4, 3), 0.95))  # only the decay: a zero gradient orthogonalizes to 0
    assert torch.equal(idle, torch.ones(4, 3)) and idle not in opt.state
    assert torch.equal(gain, torch.ones(3)) and gain not in opt.state
    opt = Muon([w], lr=0.1, weight_decay=0.0)
    w.grad = torch.zeros(4, 3)
    before = w.detach().clone()
    opt.step()
    assert torch.equal(w, before)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lr": -1.0}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
        ({"ns_steps": 0}, "ns_steps"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"shape_scale": "moonlight"}, "shape_scale"),
        ({"adam_lr": -1.0}, "adam_lr"),
        ({"adam_betas": (1.0, 0.9)}, "adam_betas"),
        ({"adam_eps": -1.0}, "adam_eps"),
        ({"adam_weight_decay": -1.0}, "adam_weight_decay"),
    ],
)
def test_rejects_invalid_hyper_parameters(kwargs, name):
    with pytest.raises(ValueError, match=f"invalid {name} "):
        Muon([nn.Parameter(torch.ones(2, 2))], **kwargs)


def test_rejects_invalid_groups():
    with pytest.raises(ValueError, match=r"invalid momentum 2\.0 in a Muon parameter group"):
        Muon([{"params": [nn.Parameter(torch.ones(2, 2))], "momentum": 2.0}])
    with pytest.raises(ValueError, match=r"invalid lr -1\.0 in an AdamW parameter group"):
        Muon([{"params": [nn.Parameter(torch.ones(2))], "use_muon": False, "lr": -1.0}])
    with pytest.raises(ValueError, match="use_muon"):
        Muon([nn.Parameter(torch.ones(3))])  # a vector has nothing to orthogonalize
    with pytest.raises(ValueError, match="more than one"):
        p = nn.Parameter(torch.ones(2, 2))
        Muon([{"params": [p]}, {"params": [p], "use_muon": False}])
