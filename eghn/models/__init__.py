"""EGHN and the baseline models."""

from .base import ModelOutput
from .registry import available, get, register

__all__ = ["ModelOutput", "available", "get", "register"]
