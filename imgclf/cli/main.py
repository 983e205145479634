"""The ``imgclf`` command: parse, build a config, call one library function, print the result.

Errors the user can fix (``ImgclfError``) become one line on stderr and exit code 2; a
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import logging
import sys
import traceback

import click
import typer
from rich.markup import escape

from imgclf.cli import commands
from imgclf.cli.console import err_console, setup_logging
from imgclf.errors import ImgclfError
from imgclf.secrets import RedactingStream, register_url_passwords

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
        ("imgclf.cli.compare", "compare", "compare_command"),
        ("imgclf.cli.sweep", "sweep", "sweep_command"),
        ("imgclf.cli.sweep", "sweep-transfer", "sweep_transfer_command"),
        ("imgclf.cli.export", "export", "export_command"),
        ("imgclf.cli.show_augs", "show-augs", "show_augs_command"),
        ("imgclf.cli.report", "report", "report_command"),
        ("imgclf.cli.ablate", "ablate", "ablate_command"),
        ("imgclf.cli.kaggle", "kaggle", "kaggle_app"),
    ]:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        target = getattr(mod, func)
        if isinstance(target, typer.Typer):  # a command group, e.g. `imgclf kaggle download|submit`
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)


_register_optional()


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    # Every byte the command writes, ours or a library's, passes through the redaction layer, which
    # also learns the passwords of URLs given on the command line (--storage, --tracking-uri, --set).
    register_url_passwords(args)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(stdout), RedactingStream(stderr)
    try:
        _run(args, debug)
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def _run(args: list[str], debug: bool) -> None:
    setup_logging(verbose=debug)
    try:
        app(args=args, prog_name="imgclf", standalone_mode=False)
    except ImgclfError as exc:
        if debug:
            _exit_with_traceback(exc.exit_code)
        for line in str(exc).splitlines() or [""]:  # one line per problem
            err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    # typer >= 0.2x carries its own copy of click: catch its exception types as well as click's.
    except (click.exceptions.Abort, typer.Abort):
        err_console.print("aborted")
        sys.exit(130)
    except (click.exceptions.Exit, typer.Exit) as exc:
        sys.exit(exc.exit_code)
    except (click.ClickException, typer.TyperException) as exc:
        show = getattr(exc, "show", None)
        if show is not None:
            show(file=sys.stderr)  # the redacting stream: a usage error may echo a secret argument
        else:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception:
        if debug:
            _exit_with_traceback(1)
        logging.getLogger("imgclf").exception("unexpected error (a bug in imgclf — please report it with this traceback)")
        sys.exit(1)


def _exit_with_traceback(code: int) -> None:
    """--debug: the full traceback, redacted like every other output."""
    sys.stderr.write(traceback.format_exc())
    sys.exit(code)
