r"""Weights saved by the authors' released EGHN code, loaded into :meth:`EGHN.released
<eghn.models.EGHN.released>`.

The released code (github ``hanjq17/EGHN``) saves ``model.state_dict()`` of its ``EGHN`` class
(e.g. ``saved_model.pth`` of its mocap script). :func:`authors_key_map` names, for every
parameter of an :class:`~eghn.models.EGHN` built by :meth:`~eghn.models.EGHN.released`, the
parameter of that state dict it comes from; :func:`load_authors_state_dict` copies them, with
the one rearrangement needed: the first layer of every EGNN edge network reads
``[|x_i - x_j|^2, h_i, h_j, e_ij]`` there and ``[h_i, h_j, |x_i - x_j|^2, e_ij]`` here.

Supported: one pooling level, any width, any numbers of interaction, pooling and decoder
layers, with or without velocities. Not supported: the released code's ``flat=True`` MLPs.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

__all__ = ["authors_key_map", "load_authors_state_dict"]

_LIN = ("weight", "bias")


def _mlp(ours: str, theirs: str, idx: tuple[int, ...] = (0, 2)) -> dict[str, str]:
    return {f"{ours}.{i}.{p}": f"{theirs}.{i}.{p}" for i in idx for p in _LIN}


def _linear(ours: str, theirs: str) -> dict[str, str]:
    return {f"{ours}.{p}": f"{theirs}.{p}" for p in _LIN}


def _egnn_layer(ours: str, theirs: str, velocity: bool) -> dict[str, str]:
    out = {}
    out.update(_mlp(f"{ours}.phi_e", f"{theirs}.edge_message_net.scalar_net.mlp"))
    out.update(_mlp(f"{ours}.phi_x", f"{theirs}.coord_net.mlp"))
    out.update(_mlp(f"{ours}.phi_h", f"{theirs}.node_net.mlp"))
    if velocity:
        out.update(_mlp(f"{ours}.phi_v", f"{theirs}.node_v_net.mlp"))
    return out


def _check_released(model: nn.Module) -> None:
    from .eghn import EGHN

    if not isinstance(model, EGHN):
        raise TypeError(f"expected an eghn.models.EGHN, got {type(model).__name__}")
    forms = (model.egnn_form, model.pool_form, model.cluster_graph, model.unpool_form, model.conn_loss)
    if any(f != "released" for f in forms) or len(model.clusters) != 1 or model.emmp != "matrix":
        raise ValueError("the authors' weights fit only EGHN.released(...) (one level, every form 'released')")


def authors_key_map(model: nn.Module) -> dict[str, str]:
    """``{eghn parameter name: authors' parameter name}`` for a model built by ``EGHN.released``.

    Example:
        >>> from eghn.models import EGHN
        >>> mapping = authors_key_map(EGHN.released(1, 1, 1, clusters=2, hidden=8))
        >>> mapping["embed.weight"], mapping["pools.0.score.0.weight"]
        ('embedding.weight', 'low_pooling.pooling.0.weight')
    """
    _check_released(model)
    vel = model.velocity
    out = _linear("embed", "embedding")
    out.update(_linear("enc_linear.0", "low_force_net.embedding"))
    for k in range(len(model.encoders[0])):
        out.update(_egnn_layer(f"encoders.0.{k}", f"low_force_net.layers.{k}", vel))
    for k in range(len(model.pools[0].layers)):
        ours, theirs = f"pools.0.layers.{k}", f"low_pooling.layers.{k}"
        out.update(_mlp(f"{ours}.phi", f"{theirs}.edge_message_net.in_scalar_net.mlp"))
        out.update(_mlp(f"{ours}.to_H", f"{theirs}.edge_message_net.out_vector_net.mlp"))
        out.update(_mlp(f"{ours}.phi_h", f"{theirs}.node_net.mlp"))
    out.update(_mlp("pools.0.score", "low_pooling.pooling"))
    out.update(_linear("dec_linear.0", "high_force_net.embedding"))
    for k in range(len(model.decoders[0])):
        out.update(_egnn_layer(f"decoders.0.{k}", f"high_force_net.layers.{k}", vel))
    nets = model.unpools[0].nets
    for k in range(len(nets)):
        theirs = "kinematics_net" if len(nets) == 1 else f"kinematics_net.layers.{k}"
        out.update(_mlp(f"unpools.0.nets.{k}.phi", f"{theirs}.in_scalar_net.mlp"))
        out.update(_mlp(f"unpools.0.nets.{k}.to_coef", f"{theirs}.out_vector_net.mlp"))
        out.update(_mlp(f"unpools.0.nets.{k}.to_h", f"{theirs}.out_scalar_net.mlp"))
    return out


def _is_edge_first_layer(name: str) -> bool:
    return (name.startswith(("encoders.", "decoders.")) and name.endswith("phi_e.0.weight"))


def load_authors_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> nn.Module:
    """Copy a state dict saved by the authors' code into ``model`` (built by ``EGHN.released``
    with the same sizes); returns ``model``.

    Raises:
        KeyError: a parameter is missing from ``state_dict``, or ``state_dict`` has parameters
            that have no place in ``model`` (both are listed).
        ValueError: a shape differs (e.g. another width or cluster count).

    Example:
        A state dict in the authors' layout -- their parameter names, their edge-input order
        ``[|x_i - x_j|^2, h_i, h_j, e_ij]`` -- made here from a model of the same sizes, then
        loaded into a fresh one (with their ``saved_model.pth``: ``torch.load`` it instead):

        >>> import torch
        >>> from eghn.models import EGHN, authors_key_map, load_authors_state_dict
        >>> torch.manual_seed(0) and None
        >>> source = EGHN.released(1, 1, 1, clusters=2, hidden=8)
        >>> theirs = {}
        >>> for ours, name in authors_key_map(source).items():
        ...     t = source.state_dict()[ours]
        ...     if ours.startswith(("encoders.", "decoders.")) and ours.endswith("phi_e.0.weight"):
        ...         t = torch.cat([t[:, 16:17], t[:, :16], t[:, 17:]], 1)  # [h_i, h_j, d2, e] -> theirs
        ...     theirs[name] = t
        >>> model = load_authors_state_dict(EGHN.released(1, 1, 1, clusters=2, hidden=8), theirs)
        >>> all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), model.state_dict().values()))
        True
    """
    mapping = authors_key_map(model)
    own = model.state_dict()
    missing = sorted(k for k in own if k not in mapping)
    if missing:  # a parameter this map does not know: a bug of the map, not of the input
        raise KeyError(f"no authors' counterpart known for {missing}")
    absent = sorted(v for v in mapping.values() if v not in state_dict)
    extra = sorted(set(state_dict) - set(mapping.values()))
    if absent or extra:
        raise KeyError(f"authors' state dict does not fit this model: missing {absent}, unexpected {extra}")
    hidden = model.embed.out_features
    new = {}
    for ours, theirs in mapping.items():
        t = torch.as_tensor(state_dict[theirs])
        if _is_edge_first_layer(ours):  # [d2, h_i, h_j, e] -> [h_i, h_j, d2, e]
            t = torch.cat([t[:, 1:1 + 2 * hidden], t[:, :1], t[:, 1 + 2 * hidden:]], 1)
        if t.shape != own[ours].shape:
            raise ValueError(f"{theirs} has shape {tuple(t.shape)}, {ours} needs {tuple(own[ours].shape)}")
        new[ours] = t.to(own[ours].dtype)
    model.load_state_dict(new)
    return model
