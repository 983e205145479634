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
from imgclf.cli.ablate import ablate_command
from imgclf.cli.compare import compare_command
from imgclf.cli.cv import cv_command, ensemble_command
from imgclf.cli.export import export_command
from imgclf.cli.kaggle import kaggle_app
from imgclf.cli.prepare import prepare_command
from imgclf.cli.report import report_command
from imgclf.cli.show_augs import show_augs_command
from imgclf.cli.sweep import sweep_command, sweep_transfer_command
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

# Pipeline order, which is also the order `imgclf --help` lists them in.
app.command("demo")(commands.demo)
app.command("prepare")(prepare_command)
app.command("show-augs")(show_augs_command)
app.command("train")(commands.train)
app.command("evaluate")(commands.evaluate)
app.command("predict")(commands.predict)
app.command("cv")(cv_command)
app.command("ensemble")(ensemble_command)
app.command("report")(report_command)
app.command("compare")(compare_command)
app.command("ablate")(ablate_command)
app.command("sweep")(sweep_command)
app.command("sweep-transfer")(sweep_transfer_command)
app.command("export")(export_command)
app.add_typer(kaggle_app, name="kaggle")


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
