r"""Theorem 1, constructively: EGNN and GMN layers are EMMP with particular message functions.

Given an :class:`~eghn.nn.EGNNLayer` or a :class:`~eghn.nn.GMNLayer`, the functions here
return an :class:`~eghn.nn.EMMP` that *shares its parameters* and reproduces its output
exactly (``tests/test_theorem1.py``; the written proof is ``proofs/theorem1.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .egnn import EGNNLayer
from .emmp import EMMP
from .gmn import GMNLayer

__all__ = ["emmp_from_egnn", "emmp_from_gmn"]


class _EGNNMessage(nn.Module):
    r"""EMMP message reproducing EGNN: with :math:`G = \hat Z^\top \hat Z` (2 x 2),
    :math:`\lVert x_i - x_j\rVert^2 = G_{11} + G_{22} - 2G_{12}` and
    :math:`H_{ij} = \phi_x(m_{ij})\,[1, -1]^\top`."""

    def __init__(self, layer: EGNNLayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, inv: Tensor, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None
                ) -> tuple[Tensor, Tensor]:
        d2 = (inv[:, 0, 0] + inv[:, 1, 1] - 2 * inv[:, 0, 1]).unsqueeze(-1)
        parts = [h[edge_index[0]], h[edge_index[1]], d2]
        if self.layer.edge_dim:
            parts.append(edge_attr)
        m = self.layer.phi_e(torch.cat(parts, -1))
        c = self.layer.phi_x(m)  # (E, 1)
        return torch.stack([c, -c], dim=1), m  # H: (E, 2, 1)


class _NodeUpdate(nn.Module):
    def __init__(self, phi_h: nn.Module, residual: bool) -> None:
        super().__init__()
        self.phi_h, self.residual = phi_h, residual

    def forward(self, h: Tensor, agg: Tensor) -> Tensor:
        out = self.phi_h(torch.cat([h, agg], -1))
        return h + out if self.residual else out


def emmp_from_egnn(layer: EGNNLayer) -> EMMP:
    r"""An EMMP with :math:`m = 1` equal to the EGNN layer ``layer`` (Theorem 1, first part).

    Call the result with ``Z = x.unsqueeze(-1)`` (shape ``(N, n, 1)``); its output
    ``Z'[..., 0]`` equals the EGNN's ``x'`` and its ``h'`` the EGNN's ``h'``.
    Frobenius normalisation is off (the EGNN needs the raw squared distance).

    Example:
        >>> import torch
        >>> from eghn.nn import EGNNLayer, emmp_from_egnn
        >>> torch.manual_seed(0) and None
        >>> egnn = EGNNLayer(8)
        >>> emmp = emmp_from_egnn(egnn)
        >>> x, h = torch.randn(4, 3), torch.randn(4, 8)
        >>> ei = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
        >>> x1, h1, _ = egnn(x, h, ei)
        >>> Z2, h2 = emmp(x.unsqueeze(-1), h, ei, torch.zeros(4, dtype=torch.long), 1)
        >>> torch.allclose(x1, Z2[..., 0], atol=1e-5), torch.allclose(h1, h2, atol=1e-5)
        (True, True)
    """
    if layer.velocity:
        raise ValueError("Theorem 1 is stated for the EGNN without velocity; use velocity=False")
    if layer.clamp is not None:
        raise ValueError("a clamped coordinate update is not an EMMP (clamping is not equivariant)")
    return EMMP(1, layer.hidden, layer.hidden, layer.edge_dim, position_channels=(0,), normalize=False,
                aggr=layer.coord_aggr, feat_aggr=layer.feat_aggr, message=_EGNNMessage(layer),
                update=_NodeUpdate(layer.phi_h, layer.residual))


class _GMNMessage(nn.Module):
    r"""EMMP message reproducing GMN: the Gram blocks give
    :math:`Z_{ij}^\top Z_{ij} = A - B - B^\top + D` and :math:`\hat H_{ij} = [H_{ij}; -H_{ij}]`."""

    def __init__(self, layer: GMNLayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, inv: Tensor, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None
                ) -> tuple[Tensor, Tensor]:
        m = self.layer.channels
        zz = inv[:, :m, :m] - inv[:, :m, m:] - inv[:, m:, :m] + inv[:, m:, m:]
        if self.layer.normalize:
            zz = zz / (torch.linalg.matrix_norm(zz).view(-1, 1, 1) + 1e-8)
        H, msg = self.layer.edge_function(zz, h, edge_index, edge_attr)
        return torch.cat([H, -H], dim=1), msg


def emmp_from_gmn(layer: GMNLayer, position_channels: Sequence[int] = (0,)) -> EMMP:
    r"""An EMMP equal to the GMN-form layer ``layer`` (Theorem 1, second part).

    Any choice of position channels gives the same result: the centring cancels in
    :math:`\hat Z_{ij}\hat H_{ij} = (Z_i - \bar Z) H - (Z_j - \bar Z) H = (Z_i - Z_j) H`.

    Example:
        >>> import torch
        >>> from eghn.nn import GMNLayer, emmp_from_gmn
        >>> torch.manual_seed(0) and None
        >>> gmn = GMNLayer(channels=2, hidden=8)
        >>> emmp = emmp_from_gmn(gmn)
        >>> Z, h = torch.randn(4, 3, 2), torch.randn(4, 8)
        >>> ei = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
        >>> Z1, h1 = gmn(Z, h, ei)
        >>> Z2, h2 = emmp(Z, h, ei, torch.zeros(4, dtype=torch.long), 1)
        >>> torch.allclose(Z1, Z2, atol=1e-5), torch.allclose(h1, h2, atol=1e-5)
        (True, True)
    """
    return EMMP(layer.channels, layer.hidden, layer.hidden, layer.edge_dim,
                position_channels=position_channels, normalize=False, aggr=layer.aggr,
                feat_aggr=layer.feat_aggr, message=_GMNMessage(layer),
                update=_NodeUpdate(layer.phi_h, layer.residual))
