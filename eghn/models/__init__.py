"""EGHN and the baseline models, selectable by name through :func:`get`."""

from .base import ModelOutput, check_input
from .eghn import EGHN
from .registry import available, get, register

__all__ = ["EGHN", "ModelOutput", "available", "check_input", "get", "register"]
