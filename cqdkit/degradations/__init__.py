"""Degradations: how the low-quality view z (and the high-quality view x) of a sample are made."""
