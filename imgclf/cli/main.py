"""The ``imgclf`` command: parse, build a config, call one library function, print the result.

Errors the user can fix (``ImgclfError``) become one line on stderr and exit code 2; a
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import logging
import sys

import click
import typer

from imgclf.cli import commands
from imgclf.cli.console import err_console, setup_logging
from imgclf.errors import ImgclfError

app = typer.Typer(
    name="imgclf",
    help="Fine-tune pretrained image classifiers on a folder of labelled photos and make a scored competition submission.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

app.command("demo")(commands.demo)
app.command("train")(commands.train)
app.command("evaluate")(commands.evaluate)
app.command("predict")(commands.predict)


def _register_optional() -> None:
    """Commands that live in their own modules (one module per command)."""
    import importlib

    for module, name, func in [
        ("imgclf.cli.prepare", "prepare", "prepare_command"),
    ]:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        app.command(name)(getattr(mod, func))


_register_optional()


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    setup_logging(verbose=debug)
    try:
        app(args=args, prog_name="imgclf", standalone_mode=False)
    except ImgclfError as exc:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception:
        if debug:
            raise
        logging.getLogger("imgclf").exception("unexpected error (a bug in imgclf — please report it with this traceback)")
        sys.exit(1)
