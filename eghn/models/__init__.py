"""EGHN and the baseline models, selectable by name through :func:`get`.

========================  ==========================  ==========================================
name                      class                       reference
========================  ==========================  ==========================================
``eghn``                  :class:`EGHN`               Han et al., NeurIPS 2022 (this package)
``linear``                :class:`LinearDynamics`     :math:`x + t v`, one learned scalar
``mpnn``                  :class:`MPNN`               Gilmer et al., 2017 (not equivariant)
``rf``                    :class:`RadialField`        Koehler et al., 2019
``egnn``                  :class:`EGNN`               Satorras et al., 2021 (velocity variant)
``gmn``                   :class:`GMN`                Huang et al., ICLR 2022
``tfn``                   :class:`TFN`                Thomas et al., 2018 (built on e3nn)
``se3_transformer``       :class:`SE3Transformer`     Fuchs et al., 2020 (built on e3nn)
========================  ==========================  ==========================================
"""

from ._common import ModelOutOfMemoryError
from .authors import authors_key_map, load_authors_state_dict
from .base import ModelOutput, check_input
from .eghn import EGHN
from .egnn import EGNN
from .gmn import GMN
from .linear import LinearDynamics
from .mpnn import MPNN
from .radial_field import RadialField
from .registry import available, get, get_class, register


def __getattr__(name: str):
    # TFN and SE3Transformer need e3nn, imported only when one of them is asked for
    if name in ("TFN", "SE3Transformer"):
        return get_class({"TFN": "tfn", "SE3Transformer": "se3_transformer"}[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EGHN",
    "EGNN",
    "GMN",
    "MPNN",
    "TFN",
    "LinearDynamics",
    "ModelOutOfMemoryError",
    "ModelOutput",
    "RadialField",
    "SE3Transformer",
    "authors_key_map",
    "available",
    "check_input",
    "get",
    "get_class",
    "load_authors_state_dict",
    "register",
]
