"""Verify equivariance numerically: the checker used by the test-suite, exposed for users.

Hypothesis strategies live in :mod:`eghn.testing.strategies` (needs ``hypothesis``).
"""

from .equivariance import (
    TOLERANCES,
    assert_equivariant,
    equivariance_error,
    random_orthogonal,
    random_permutation,
    random_rotation_about_axis,
    randomize_parameters,
)

__all__ = [
    "TOLERANCES",
    "assert_equivariant",
    "equivariance_error",
    "random_orthogonal",
    "random_permutation",
    "random_rotation_about_axis",
    "randomize_parameters",
]
