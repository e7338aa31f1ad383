"""``python -m cqdkit`` (what ``torchrun -m cqdkit run ...`` calls)."""

from .cli import main

main()
