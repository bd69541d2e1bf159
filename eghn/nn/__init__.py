"""Neural-network layers of EGHN."""

__all__: list[str] = []
