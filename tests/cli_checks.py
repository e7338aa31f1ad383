"""Running the command line in a test and reading a clean refusal from it."""

from __future__ import annotations

from click.testing import CliRunner

from cqdkit.cli import cli


def invoke(*args: object):
    """``cqdkit ARGS...`` in this process (each argument as text, paths included)."""
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def one_line_error(result) -> str:  # noqa: ANN001 (a click Result)
    """The ``error:`` line of a clean refusal: exit status 2, exactly one error line, no traceback (progress
    lines such as ``run folder: ...`` may come before it)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    errors = [line for line in result.output.splitlines() if line.lower().startswith("error")]
    assert "Traceback" not in result.output and len(errors) == 1, result.output
    return errors[0]
