"""Equivariance checking utilities."""

__all__: list[str] = []
