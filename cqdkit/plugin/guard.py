"""Exceptions raised inside plugin code, reported as one line that names the plugin.

cqdkit calls plugin code at a few places: a degradation's factory and its op (once per sample, in
``PairMaker``), a backbone's factory (``create_backbone``), a loss's factory and the loss itself (through
:meth:`PluginManager.loss`, whose entries come back wrapped in :class:`Guarded`), and a dataset's factory
(``load_dataset``). Each place catches what the plugin raised and calls :func:`reraise`:

- a :class:`~cqdkit.errors.CqdkitError` goes through unchanged: it is the plugin's own message about bad
  input (``SpecError``, ``DataError``, ``TrainingError``); so does an ``OSError`` (a missing file, a full
  disk: the system's words, which the command line already prints as one line);
- anything raised by cqdkit's built-in plugins goes through unchanged too: it is a bug in cqdkit, shown
  with its traceback;
- anything else becomes a :class:`~cqdkit.errors.PluginError`, ``plugin 'occlude' (cqdkit-occlude 0.1.0)
  failed in its degradation op: ValueError: ...``, chained to the original (``raise ... from error``), so
  the traceback still reaches the plugin's own frame: pytest prints the chain, and the command line prints
  it with ``CQDKIT_TRACEBACK=1`` (one line otherwise).

A call site costs one ``try`` (nothing extra when nothing is raised).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import CqdkitError, PluginError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .manager import PluginInfo

#: Set to 1 to see the full traceback of an expected error (a plugin's exception, a bad file, ...).
TRACEBACK_ENV = "CQDKIT_TRACEBACK"

#: The longest excerpt of a plugin's exception message in the one-line report.
MESSAGE_LIMIT = 400


def traceback_requested() -> bool:
    """Whether ``CQDKIT_TRACEBACK`` asks for full tracebacks of expected errors."""
    return os.environ.get(TRACEBACK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def describe_plugin(plugin: PluginInfo) -> str:
    """``plugin 'occlude' (cqdkit-occlude 0.1.0)``, or ``plugin 'my_module'`` for one registered by hand."""
    where = f" ({plugin.dist} {plugin.version})" if plugin.dist else ""
    return f"plugin {plugin.name!r}{where}"


def failure_message(plugin: PluginInfo, what: str, error: BaseException) -> str:
    """One line: the plugin, what of it failed, and the exception's type and (whitespace-collapsed) message."""
    text = " ".join(str(error).split())
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 1] + "…"
    return f"{describe_plugin(plugin)} failed in its {what}: {type(error).__name__}" + (f": {text}" if text else "")


def reraise(plugin: PluginInfo | None, what: str, error: Exception) -> NoReturn:
    """Re-raise ``error``, caught from plugin code: as a :class:`PluginError` naming ``plugin`` (chained to
    ``error``), or unchanged for a :class:`CqdkitError`, an ``OSError``, a built-in plugin or an unknown
    plugin.

    Call it from an ``except`` block: ``except Exception as error: reraise(plugin, "loss", error)``.
    """
    if plugin is None or plugin.builtin or isinstance(error, (CqdkitError, OSError)):
        raise error
    raise PluginError(failure_message(plugin, what, error)) from error


@dataclass(frozen=True)
class Guarded:
    """``function`` with :func:`reraise` around each call; with ``result_what``, what the call returns is
    wrapped too (a loss factory's loss).

    Other attributes are those of ``function`` (``guarded.temperature`` is the loss's).
    """

    function: Callable[..., Any]
    plugin: PluginInfo
    what: str
    result_what: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            result = self.function(*args, **kwargs)
        except Exception as error:
            reraise(self.plugin, self.what, error)
        if self.result_what is not None and callable(result):
            return Guarded(result, self.plugin, self.result_what)
        return result

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("function", "plugin", "what", "result_what"):
            raise AttributeError(name)  # not yet set (unpickling) or a special name: never forwarded
        return getattr(self.function, name)
