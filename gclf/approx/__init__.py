"""Sigmoid/tanh approximations: float schemes (schemes.py) and their exact integer tables (fixed.py)."""
from gclf.approx.schemes import FUNCS, Approx, available, error_table, get_approx

__all__ = ["FUNCS", "Approx", "available", "error_table", "get_approx"]
