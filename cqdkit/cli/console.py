"""The rich consoles every command prints to (stdout for results, stderr for messages)."""

from __future__ import annotations

from rich.console import Console

console = Console()
err_console = Console(stderr=True)
