"""Edge MLPs (eghn.nn.edge_mlp): the node split and the recomputed activations compute what the
plain modules compute -- values, gradients, second derivatives, under autocast."""

from __future__ import annotations

import pytest
import torch
from torch import nn


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
    from eghn.nn.edge_mlp import set_edge_recompute

    set_edge_recompute(request.param)
    yield request.param
    set_edge_recompute("auto")


@pytest.mark.parametrize("d", [0, 4])
@pytest.mark.parametrize("use_main", [True, False])
def test_edge_mlp_matches_plain_modules(d, use_main, recompute):
    from eghn.nn.edge_mlp import edge_mlp

    torch.manual_seed(4)
    first = nn.Linear(2 * 6 + d, 8)
    main = [nn.SiLU(), nn.Linear(8, 8), nn.SiLU()]
    head = [nn.Linear(8, 8), nn.SiLU(), nn.Linear(8, 2, bias=False)]
    mods = nn.ModuleList([first, *main, *head]).double()
    h = torch.randn(7, 6, dtype=torch.float64, requires_grad=True)
    i, j = torch.randint(0, 7, (2, 20))
    rest = torch.randn(20, d, dtype=torch.float64, requires_grad=True)
    y, c = edge_mlp(first, h, i, j, rest if d else None, main, head)
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
        torch.testing.assert_close(edge_mlp(first, h, i, j, rest if d else None, main, head)[1], ref_c)


def test_edge_recompute_mode_is_checked():
    from eghn.nn.edge_mlp import set_edge_recompute

    with pytest.raises(ValueError, match="recompute"):
        set_edge_recompute("sometimes")


def test_eghn_gradients_do_not_depend_on_recompute_mode():
    """The whole model: recomputing edge activations changes memory, not gradients."""
    from eghn.data import Graph, collate
    from eghn.models import EGHN
    from eghn.nn.edge_mlp import set_edge_recompute

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
    """Under torch.autocast the edge MLPs compute in the autocast dtype, forward and
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


def test_edge_mlp_supports_double_backward(recompute):
    """Plain autograd throughout: a gradient of a gradient (e.g. a force-matching loss) works."""
    from eghn.nn.edge_mlp import edge_mlp

    torch.manual_seed(7)
    first = nn.Linear(2 * 3 + 1, 5).double()
    main = [nn.SiLU(), nn.Linear(5, 5).double(), nn.SiLU()]
    h = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    i, j = torch.randint(0, 4, (2, 9))
    rest = torch.randn(9, 1, dtype=torch.float64, requires_grad=True)

    def f(h, rest):
        return edge_mlp(first, h, i, j, rest, main)[0].square().sum()

    ref = lambda h, rest: _plain(first(torch.cat([h[i], h[j], rest], -1)), main)[0].square().sum()  # noqa: E731
    (gr,) = torch.autograd.grad(f(h, rest), rest, create_graph=True)
    (gr_ref,) = torch.autograd.grad(ref(h, rest), rest, create_graph=True)
    torch.testing.assert_close(gr, gr_ref, rtol=1e-10, atol=1e-12)
    (hh,) = torch.autograd.grad(gr.sum(), h)
    (hh_ref,) = torch.autograd.grad(gr_ref.sum(), h)
    torch.testing.assert_close(hh, hh_ref, rtol=1e-10, atol=1e-12)


def test_recomputation_keeps_no_edge_activation():
    """With recomputation, the tensors saved for the backward pass hold nothing edge-sized but
    the inputs; without it, the activations of every layer are kept."""
    from eghn.nn.edge_mlp import edge_mlp, set_edge_recompute

    torch.manual_seed(8)
    n, e, width = 50, 4000, 32
    first = nn.Linear(2 * 8 + 1, width)
    main = [nn.SiLU(), nn.Linear(width, width), nn.SiLU()]
    head = [nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 1)]
    h = torch.randn(n, 8, requires_grad=True)
    i, j = torch.randint(0, n, (2, e))
    rest = torch.randn(e, 1)
    saved = {}
    for mode in (True, False):
        set_edge_recompute(mode)
        sizes = []

        def pack(t, sizes=sizes):
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            edge_mlp(first, h, i, j, rest, main, head)
        saved[mode] = sum(s for s in sizes if s >= e * width)
    set_edge_recompute("auto")
    assert saved[True] == 0
    assert saved[False] >= 4 * e * width
