"""Small multilayer perceptrons and activation lookup used by every layer."""

from __future__ import annotations

from torch import Tensor, nn

from .edge_mlp import pair_linear

__all__ = ["MLP", "activation", "pair_linear"]

_ACTS = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


def activation(name: str) -> nn.Module:
    """An activation module by name (``silu``, ``relu``, ``gelu``, ``tanh``, ``leaky_relu``).

    Example:
        >>> from eghn.nn.mlp import activation
        >>> activation("tanh")
        Tanh()
    """
    try:
        return _ACTS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTS)}") from None


class MLP(nn.Sequential):
    """A stack of linear layers with an activation between them (and after the last one if ``act_last``).

    Shapes:
        - input: :math:`(*, \\text{in\\_dim})` -> output: :math:`(*, \\text{out\\_dim})`

    Example:
        >>> import torch
        >>> from eghn.nn import MLP
        >>> mlp = MLP(4, 16, 2, layers=3)
        >>> len(mlp), tuple(mlp(torch.randn(5, 4)).shape)
        (5, (5, 2))
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int = 2, act: str = "silu",
                 act_last: bool = False) -> None:
        if layers < 1:
            raise ValueError("an MLP needs at least one layer")
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        mods: list[nn.Module] = []
        for k in range(layers):
            mods.append(nn.Linear(dims[k], dims[k + 1]))
            if k < layers - 1 or act_last:
                mods.append(activation(act))
        super().__init__(*mods)

    def rest(self, x: Tensor) -> Tensor:
        """Apply every module after the first Linear (used with :func:`pair_linear`)."""
        for mod in list(self)[1:]:
            x = mod(x)
        return x
