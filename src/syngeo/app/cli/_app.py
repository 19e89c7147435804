"""The typer application object and the error boundary shared by every command.

Commands live in sibling modules (``demo``, ``infer``, ``reproduce``, ...) and register themselves
on :data:`app`. :func:`main` is the console-script entry point: it turns the library's input errors
(``ValueError``, ``TypeError``, ``FileNotFoundError``, ``FileExistsError``, ``OSError``) into one
line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console

app = typer.Typer(
    name="syngeo",
    help=(
        "Synaptic geometry: infer the geometry of plasticity from synaptic weights, train under "
        "mirror descent, and reproduce the figures of the papers syngeo implements."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version_callback(value: bool) -> None:
    if value:
        from syngeo import __version__

        typer.echo(f"syngeo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version."
    ),
) -> None:
    """Synaptic geometry: infer plasticity geometry from weights, train under mirror descent,
    and reproduce the papers' figures. Run `syngeo COMMAND --help` for examples."""


console = Console()
err_console = Console(stderr=True)

#: Exceptions that mean "bad input": reported in one line with exit code 2.
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    PermissionError,
    OSError,
    KeyError,
)


# Recent typer releases bundle their own copy of click, whose exceptions are not click's: catch
# both families so that usage errors are one line and exit code 2 whichever typer is installed.
_EXIT = tuple({click.exceptions.Exit, getattr(typer, "Exit", click.exceptions.Exit)})
_ABORT = tuple({click.exceptions.Abort, getattr(typer, "Abort", click.exceptions.Abort)})
_USAGE_ERRORS = tuple(
    {click.ClickException, getattr(typer, "TyperException", click.ClickException)}
)


def fail(message: str) -> None:
    """Print ``error: message`` on stderr and exit with code 2."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise SystemExit(2)


def _one_line(exc: BaseException) -> str:
    text = str(exc) if str(exc) else type(exc).__name__
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``syngeo``)."""
    # Register the commands (import side effect) only when the CLI actually runs.
    from syngeo.app.cli import _commands  # noqa: F401

    try:
        rv = app(args=argv, standalone_mode=False, prog_name="syngeo")
    except _EXIT as exc:  # --help, typer.Exit
        raise SystemExit(getattr(exc, "exit_code", 0)) from None
    except _USAGE_ERRORS as exc:  # bad option, missing argument, bad value
        if hasattr(exc, "show"):
            exc.show()
        else:  # pragma: no cover - depends on the typer release
            err_console.print(f"[bold red]error:[/] {_one_line(exc)}", highlight=False)
        raise SystemExit(2) from None
    except _ABORT:
        err_console.print("aborted")
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        err_console.print("interrupted: finished work is kept; rerun the same command to resume")
        raise SystemExit(130) from None
    except INPUT_ERRORS as exc:
        fail(_one_line(exc))
    if isinstance(rv, int) and rv != 0:
        raise SystemExit(rv)
    sys.exit(0)
