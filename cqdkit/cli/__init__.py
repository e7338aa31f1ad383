"""The ``cqdkit`` command line: thin click commands that call the library and print with rich.

Expected errors (:class:`cqdkit.CqdkitError`) and input/output errors (``OSError``: a full disk, a
read-only folder) print one clear line and exit with status 2 (``CQDKIT_TRACEBACK=1`` prints their
traceback first); anything else is a bug and is shown with a rich traceback. Start-up imports neither
torch nor timm.
"""

from __future__ import annotations

import io
import logging
import sys
import traceback
import warnings

import click

from .. import __version__
from ..errors import CqdkitError, PluginError
from ..plugin import configure_autoload, get_plugin_manager
from ..plugin.guard import TRACEBACK_ENV, traceback_requested
from .console import err_console
from .plugins import list_group, plugins
from .convert import convert_weights
from .degrade import degrade
from .table import table
from .compare import compare
from .tune import tune
from .explain import explain
from .export import export
from .multires import multires
from .superres import sr_train
from .inspect import inspect_
from .run import run
from .report import report


class UserError(click.ClickException):
    """A :class:`CqdkitError` shown to the user: message only, exit status 2."""

    exit_code = 2

    def show(self, file=None) -> None:  # noqa: ANN001 (click's signature)
        err_console.print("[bold red]error:[/] ", end="")
        err_console.print(self.message, markup=False, highlight=False, soft_wrap=True)


class CqdkitGroup(click.Group):
    """A click group that turns :class:`CqdkitError` into a one-line message."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except CqdkitError as error:
            _traceback_on_request(error)
            hint = ""
            if isinstance(error, PluginError) and error.__cause__ is not None and not traceback_requested():
                hint = f" ({TRACEBACK_ENV}=1 shows the traceback)"  # for the plugin's author
            raise UserError(f"{_one_line(str(error))}{hint}") from None
        except KeyboardInterrupt:  # Ctrl-C: finished models and checkpoints are on disk, written atomically
            err_console.print("[bold red]interrupted:[/] what was finished is kept; run the same command again "
                              "(cqdkit run: with --resume) to continue", highlight=False)
            ctx.exit(130)
        except OSError as error:  # a full disk, a read-only folder, a file that vanished: the system's words
            _traceback_on_request(error)
            where = f"{error.filename}: " if error.filename else ""
            raise UserError(f"{where}{error.strerror or error} (an input/output error; nothing was lost: "
                            "fix it and run again, with --resume for a run)") from None


def _one_line(message: str) -> str:
    """The message itself, also when a DataLoader worker re-raised it with its traceback inside (torch puts
    "Caught X in DataLoader worker process N. Original Traceback ..." before the original message)."""
    if "Original Traceback" not in message:
        return message
    last = [line for line in message.splitlines() if line.strip()][-1]
    return last.split(": ", 1)[1] if last.startswith("cqdkit.errors.") and ": " in last else last


def _traceback_on_request(error: BaseException) -> None:
    """With CQDKIT_TRACEBACK=1, the full traceback of an expected error (chained causes included)."""
    if traceback_requested():
        click.echo("".join(traceback.format_exception(error)).rstrip(), err=True)


def _no_plugins(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        configure_autoload(False)


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"cqdkit {__version__}")
    try:
        manager = get_plugin_manager()
        third_party, problems = manager.third_party(), manager.problems()
    except Exception as error:  # --version answers whatever the installed plugins do
        third_party, problems = [], [f"the plugins could not be loaded: {type(error).__name__}: {error}"]
    if third_party:
        click.echo("plugins:")
        for info in third_party:
            click.echo(f"  {info.dist} {info.version} ({info.name})")
    for problem in problems:
        click.echo(f"  problem: {problem}", err=True)
    ctx.exit()


@click.group(cls=CqdkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--no-plugins",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_no_plugins,
    help="Load built-in plugins only (same as CQDKIT_DISABLE_PLUGIN_AUTOLOAD=1).",
)
@click.option(
    "--version",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_print_version,
    help="Show the version and the third-party plugins, then exit.",
)
def cli() -> None:
    """cqdkit: Cross Quality Distillation.

    Train a teacher on high-quality images, make low-quality views automatically, and distil the teacher
    into a student that recognises the low-quality images.
    """
    _printable_file_names()
    _show_log_messages()
    _show_warnings()


def _printable_file_names() -> None:
    """A path with bytes that are not UTF-8 (``os.fsdecode`` makes them lone surrogates) is printed with those
    bytes escaped (``\\udce9``), not a UnicodeEncodeError, where the locale made stdout or stderr strict."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")


def _show_warnings() -> None:
    """Python warnings (a plugin clash, a weights file with another class count) as one line each,
    ``warning: <message>``, without the file and line of the code that issued them."""

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None,
             line: str | None = None) -> None:
        err_console.print(f"[yellow]warning:[/] {message}", highlight=False)

    warnings.showwarning = show


def _show_log_messages() -> None:
    """cqdkit's INFO log lines (e.g. which edge detector ran) go to stderr through rich."""
    from rich.logging import RichHandler

    logger = logging.getLogger("cqdkit")
    if not any(isinstance(handler, RichHandler) for handler in logger.handlers):
        logger.addHandler(RichHandler(console=err_console, show_path=False, show_time=False))
    logger.setLevel(logging.INFO)


cli.add_command(plugins)
cli.add_command(list_group)
cli.add_command(run)
cli.add_command(degrade)
cli.add_command(inspect_)
cli.add_command(table)
cli.add_command(tune)
cli.add_command(compare)
cli.add_command(explain)
cli.add_command(export)
cli.add_command(multires)
cli.add_command(sr_train)
cli.add_command(convert_weights)
cli.add_command(report)


def main() -> None:
    """Console-script entry point: runs the CLI, showing unexpected errors as a rich traceback."""
    try:
        cli.main(prog_name="cqdkit")
    except Exception:  # a bug, not a user error: show everything
        err_console.print_exception(show_locals=False)
        sys.exit(1)
