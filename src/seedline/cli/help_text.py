"""Placeholders in ``--help`` that people read: ``--sweep SWEEP``, never ``<str>``, ``<bool>`` or ``{RUN}``.

typer labels every parameter with its Python type (``<str>``, and ``<bool>`` beside a
flag, which takes no value) and wraps required arguments in braces in the usage line.
The names we give (RUN, MODEL, NAME@ALIAS) already say what to type, so the help shows
those: a value option shows an upper-case name for its value, a flag shows nothing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from typer.core import TyperArgument, TyperOption
from typer.models import Context

_TYPE_NAMES = {int: "N", float: "NUMBER", Path: "PATH"}


class _PlainArgument(TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the argument's own name (RUN, MODEL, INPUT) says what it takes

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")


class _PlainOption(TyperOption):
    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None
        if self.metavar is not None:
            return self.metavar
        return _value_name(self)


def _value_name(option: TyperOption) -> str:
    annotation = getattr(option.type_descriptor, "annotation", None)
    for kind, label in _TYPE_NAMES.items():
        if annotation is kind or (isinstance(annotation, type) and issubclass(annotation, kind)):
            return label
    # a parameter named after a builtin (``set_``) is shown without its trailing underscore
    return (option.name or "value").rstrip("_").upper()


def plain_placeholders(command: Any) -> None:
    """Give every parameter of ``command`` and its subcommands the plain placeholders above."""
    # --help is made (and cached) on first use; make it now so that it is swapped too
    with contextlib.suppress(Exception):
        command.get_help_option(Context(command))
    params = [*getattr(command, "params", []), getattr(command, "_help_option", None)]
    for param in params:
        if type(param) is TyperArgument:
            param.__class__ = _PlainArgument
        elif type(param) is TyperOption:
            param.__class__ = _PlainOption
    for sub in getattr(command, "commands", {}).values():
        plain_placeholders(sub)
