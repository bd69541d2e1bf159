"""MLP chains as single autograd nodes (eghn.nn.lean) equal the plain modules: values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.utils.prune
from torch import nn

from eghn.nn.lean import chain_spec, run_modules


def _plain(x, main, *heads):
    y = x
    for mod in main:
        y = mod(y)
    outs = [y]
    for head in heads:
        z = y
        for mod in head:
            z = mod(z)
        outs.append(z)
    return outs


def _chains(act):
    A = lambda: act()  # noqa: E731
    return {
        "mlp": ([nn.Linear(5, 8), A(), nn.Linear(8, 4)], []),
        "act_last": ([nn.Linear(5, 8), A(), nn.Linear(8, 4), A()], []),
        "act_first": ([A(), nn.Linear(5, 8), A()], []),
        "three": ([nn.Linear(5, 8), A(), nn.Linear(8, 8), A(), nn.Linear(8, 3, bias=False)], []),
        "heads": ([A(), nn.Linear(5, 8), A()],
                  [[nn.Linear(8, 8), A(), nn.Linear(8, 1, bias=False)], [nn.Linear(8, 6)]]),
        "head_no_act": ([nn.Linear(5, 8)], [[nn.Linear(8, 8), A(), nn.Linear(8, 2)]]),
    }


@pytest.mark.parametrize("act", [nn.SiLU, nn.ReLU, nn.GELU, nn.Tanh])
@pytest.mark.parametrize("name", list(_chains(nn.SiLU)))
def test_matches_plain_modules(act, name):
    torch.manual_seed(0)
    main, heads = _chains(act)[name]
    mods = nn.ModuleList(main + [m for h in heads for m in h]).double()
    assert chain_spec(main) is not None
    x = torch.randn(7, 3, 5, dtype=torch.float64, requires_grad=True)
    outs = run_modules(x, main, *heads)
    ref = _plain(x, main, *heads)
    assert len(outs) == len(ref)
    weights = [torch.randn_like(r) for r in ref]
    for o, r in zip(outs, ref):
        assert o.shape == r.shape
        torch.testing.assert_close(o, r, rtol=1e-12, atol=1e-12)
    params = [x, *mods.parameters()]
    g = torch.autograd.grad(sum((o * w).sum() for o, w in zip(outs, weights)), params)
    g_ref = torch.autograd.grad(sum((r * w).sum() for r, w in zip(ref, weights)), params)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_unused_head_and_frozen_input():
    torch.manual_seed(1)
    main, heads = _chains(nn.SiLU)["heads"]
    nn.ModuleList(main + [m for h in heads for m in h]).double()
    x = torch.randn(4, 5, dtype=torch.float64)  # no gradient wanted for the input
    _y, c, _d = run_modules(x, main, *heads)
    c.sum().backward()  # d unused
    assert heads[1][0].weight.grad is None and heads[1][0].bias.grad is None
    assert main[1].weight.grad is not None and heads[0][0].weight.grad is not None


def test_unsupported_chain_falls_back():
    main = [nn.Linear(3, 4), nn.Dropout(0.0), nn.Linear(4, 2)]
    assert chain_spec(main) is None
    x = torch.randn(2, 3)
    torch.testing.assert_close(run_modules(x, main)[0], main[2](main[0](x)))


def test_hooked_modules_run_as_plain_modules():
    """A pruning mask (a forward pre-hook) is honoured: hooked chains are not fused."""
    torch.manual_seed(7)
    main = [nn.Linear(3, 4), nn.SiLU(), nn.Linear(4, 2)]
    torch.nn.utils.prune.l1_unstructured(main[0], "weight", amount=0.5)
    assert chain_spec(main) is None
    x = torch.randn(5, 3)
    torch.testing.assert_close(run_modules(x, main)[0], main[2](main[1](main[0](x))))


def test_no_grad_path_matches():
    torch.manual_seed(2)
    main, heads = _chains(nn.SiLU)["heads"]
    x = torch.randn(6, 5)
    with torch.no_grad():
        a = run_modules(x, main, *heads)
    b = _plain(x, main, *heads)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v)


@pytest.mark.parametrize("d", [0, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_pair_linear_matches_concatenation(d, bias):
    from eghn.nn.mlp import pair_linear

    torch.manual_seed(3)
    lin = nn.Linear(2 * 4 + d, 6, bias=bias).double()
    h = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    i, j = torch.randint(0, 5, (2, 11))
    rest = torch.randn(11, d, dtype=torch.float64, requires_grad=True)
    out = pair_linear(lin, h, i, j, rest if d else None)
    ref = lin(torch.cat([h[i], h[j], rest], -1))
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(ref)
    params = [h, *lin.parameters()] + ([rest] if d else [])
    for a, b in zip(torch.autograd.grad((out * w).sum(), params), torch.autograd.grad((ref * w).sum(), params)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.fixture(params=[True, False], ids=["recompute", "keep"])
def recompute(request):
    from eghn.nn.lean import set_edge_recompute

    set_edge_recompute(request.param)
    yield request.param
    set_edge_recompute("auto")


@pytest.mark.parametrize("d", [0, 4])
@pytest.mark.parametrize("use_main", [True, False])
def test_edge_chain_matches_plain_modules(d, use_main, recompute):
    from eghn.nn.lean import edge_chain

    torch.manual_seed(4)
    first = nn.Linear(2 * 6 + d, 8)
    main = [nn.SiLU(), nn.Linear(8, 8), nn.SiLU()]
    head = [nn.Linear(8, 8), nn.SiLU(), nn.Linear(8, 2, bias=False)]
    mods = nn.ModuleList([first, *main, *head]).double()
    h = torch.randn(7, 6, dtype=torch.float64, requires_grad=True)
    i, j = torch.randint(0, 7, (2, 20))
    rest = torch.randn(20, d, dtype=torch.float64, requires_grad=True)
    y, c = edge_chain(first, h, i, j, rest if d else None, main, head)
    ref_y, ref_c = _plain(first(torch.cat([h[i], h[j], rest], -1)), main, head)
    torch.testing.assert_close(y, ref_y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c, ref_c, rtol=1e-12, atol=1e-12)
    wy, wc = torch.randn_like(y), torch.randn_like(c)
    params = [h, *mods.parameters()] + ([rest] if d else [])
    loss = (c * wc).sum() + ((y * wy).sum() if use_main else 0)
    ref = (ref_c * wc).sum() + ((ref_y * wy).sum() if use_main else 0)
    for a, b in zip(torch.autograd.grad(loss, params), torch.autograd.grad(ref, params)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(edge_chain(first, h, i, j, rest if d else None, main, head)[1], ref_c)


def test_edge_recompute_mode_is_checked():
    from eghn.nn.lean import set_edge_recompute

    with pytest.raises(ValueError, match="recompute"):
        set_edge_recompute("sometimes")


def test_eghn_gradients_do_not_depend_on_recompute_mode():
    """The whole model: recomputing edge activations changes memory, not gradients."""
    from eghn.data import Graph, collate
    from eghn.models import EGHN
    from eghn.nn.lean import set_edge_recompute

    torch.manual_seed(5)
    ring = torch.tensor([[0, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 0], [1, 2, 3, 4, 5, 0, 0, 1, 2, 3, 4, 5]])
    g = collate([Graph(pos=torch.randn(6, 3), vel=torch.randn(6, 3), edge_index=ring, local_edge_index=ring)
                 for _ in range(3)]).to(torch.float64)
    model = EGHN(1, 0, hidden=8, clusters=[3, 2]).double()
    grads = []
    for mode in (True, False):
        set_edge_recompute(mode)
        model.zero_grad()
        out = model(g)
        (out.pos.square().sum() + out.aux["reg_loss"]).backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    set_edge_recompute("auto")
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["eghn", "egnn", "gmn", "mpnn"])
def test_models_train_under_cpu_autocast(name, recompute):
    """Under torch.autocast the hand-written nodes compute in the autocast dtype, forward and
    backward alike (bfloat16 on the CPU here; the CUDA variant is in tests/test_gpu.py)."""
    from eghn.data import Graph, collate
    from eghn.models import get

    torch.manual_seed(6)
    ring = torch.tensor([[0, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 0], [1, 2, 3, 4, 5, 0, 0, 1, 2, 3, 4, 5]])
    g = collate([Graph(pos=torch.randn(6, 3), vel=torch.randn(6, 3), edge_index=ring, local_edge_index=ring)
                 for _ in range(3)])
    model = get(name, node_dim=1, edge_dim=0)
    out32 = model(g).pos
    grads = []
    for amp in (False, True):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(g)
            loss = (out.pos.float() - g.pos).square().mean()
        loss.backward()
        grads.append(torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None]))
        if amp:
            torch.testing.assert_close(out.pos.float(), out32, rtol=0.1, atol=0.1)
    assert torch.isfinite(grads[1]).all()
    cos = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)
    assert cos > 0.9, f"bfloat16 gradients point elsewhere (cosine {cos:.3f})"
