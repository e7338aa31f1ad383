"""Distillation losses: the L2 term of Equation 1."""
