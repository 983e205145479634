"""The ``imgclf`` command: parse, build a config, call one library function, print the result.

Errors the user can fix (``ImgclfError``) become one line on stderr and exit code 2; a
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
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
from imgclf.terminal import err_console, setup_logging
from imgclf.cli.help_format import Command, Group
from imgclf.errors import ImgclfError
from imgclf.secrets import RedactingStream, redact, register_url_passwords

app = typer.Typer(
    name="imgclf",
    help="Fine-tune pretrained image classifiers on a folder of labelled photos and make a scored competition submission.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Pipeline order, which is also the order `imgclf --help` lists them in.
app.command("demo", cls=Command)(commands.demo)
app.command("prepare", cls=Command)(prepare_command)
app.command("show-augs", cls=Command)(show_augs_command)
app.command("train", cls=Command)(commands.train)
app.command("evaluate", cls=Command)(commands.evaluate)
app.command("predict", cls=Command)(commands.predict)
app.command("cv", cls=Command)(cv_command)
app.command("ensemble", cls=Command)(ensemble_command)
app.command("report", cls=Command)(report_command)
app.command("compare", cls=Command)(compare_command)
app.command("ablate", cls=Command)(ablate_command)
app.command("sweep", cls=Command)(sweep_command)
app.command("sweep-transfer", cls=Command)(sweep_transfer_command)
app.command("export", cls=Command)(export_command)
app.add_typer(kaggle_app, name="kaggle", cls=Group)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imgclf")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e . in the checkout)"


def _show_version(value: bool) -> None:
    if value:
        print(f"imgclf {_version()}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Fine-tune pretrained image classifiers on a folder of labelled photos and make a scored competition submission."""


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
    # SIGTERM (a scheduler, `kill`, a container stop) ends a run the way Ctrl-C does: checkpoint
    # kept, temporary files removed, exit 130 with the resume command.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        _run(args, debug)
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def _run(args: list[str], debug: bool) -> None:
    setup_logging(verbose=debug)
    try:
        app(args=args, prog_name="imgclf", standalone_mode=False)
    except ImgclfError as exc:
        if debug:
            _exit_with_traceback(exc.exit_code)
        for line in _error_lines(str(exc)):  # one line per problem
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
    except OSError as exc:
        # The file system said no (a full disk, a read-only folder, an --out under a file): the user's
        # to fix, so one line naming the file, not a traceback. Writes are atomic, so nothing is half-written.
        if debug:
            _exit_with_traceback(2)
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        err_console.print(
            f"[bold red]error:[/] {escape((exc.strerror or str(exc) or type(exc).__name__)[:200])}{escape(str(where)[:200])}",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)
    except Exception:
        if debug:
            _exit_with_traceback(1)
        logging.getLogger("imgclf").exception(
            "unexpected error (a bug in imgclf — please report it with this traceback)"
        )
        sys.exit(1)


MAX_ERROR_LINES = 20
MAX_ERROR_CHARS = 290


def _error_lines(message: str) -> list[str]:
    """At most 20 lines of under 300 characters each (masked first, so no secret is cut in half)."""
    lines = [redact(line) for line in message.splitlines()] or [""]
    shown = [
        line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 3] + "..."
        for line in lines[:MAX_ERROR_LINES]
    ]
    if len(lines) > MAX_ERROR_LINES:
        shown.append(f"... and {len(lines) - MAX_ERROR_LINES} more problem(s)")
    return shown


def _exit_with_traceback(code: int) -> None:
    """--debug: the full traceback, redacted like every other output."""
    sys.stderr.write(traceback.format_exc())
    sys.exit(code)
