"""Help-page fixes shared by every command: a flag is shown without a value placeholder.

typer (0.29) prints ``<bool>`` after every flag, ``--help`` included, as if it took a value
(``--deterministic <bool>``). The command and group classes here clear the placeholder of flags,
through typer's own extension point (``cls=``), so the help reads ``--deterministic``.
"""

from __future__ import annotations

from typing import Any

import click
from typer.core import TyperCommand, TyperGroup


def _no_flag_metavar(param: Any) -> None:
    if getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""


class _NoBoolMetavar:
    """Mixed into a typer command or group: its flags (its own and ``--help``) show no ``<bool>``."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for param in self.params:
            _no_flag_metavar(param)

    def get_help_option(self, ctx: click.Context) -> Any:
        option = super().get_help_option(ctx)
        _no_flag_metavar(option)
        return option


class Command(_NoBoolMetavar, TyperCommand):
    """A typer command whose flags show no ``<bool>``."""


class Group(_NoBoolMetavar, TyperGroup):
    """A typer group whose flags (``--version``, ``--help``) show no ``<bool>``."""
