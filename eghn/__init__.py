"""eghn: Equivariant Graph Hierarchy-Based Neural Networks (Han et al., NeurIPS 2022).

Subpackages:

* :mod:`eghn.data` -- the :class:`~eghn.data.Graph` type, batching and the datasets;
* :mod:`eghn.nn` -- EMMP, E-Pool, E-UnPool and the connectivity loss;
* :mod:`eghn.models` -- EGHN and the baselines, selectable by name;
* :mod:`eghn.testing` -- the equivariance checker and hypothesis strategies.
"""

from . import data, models, nn, testing

__version__ = "0.9.31"

__all__ = ["__version__", "data", "models", "nn", "testing"]
