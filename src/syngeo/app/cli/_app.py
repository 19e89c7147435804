"""The typer application object and the error boundary shared by every command.

Commands live in sibling modules (``demo``, ``infer``, ``reproduce``, ...) and register themselves
on :data:`app`. :func:`main` is the console-script entry point and sorts every failure into one of
two kinds:

* **bad input** — :class:`syngeo.InputError` and its subclasses (raised by every input check in
  the library), file-system errors (``OSError``: a missing file, an existing ``--out``) and
  usage errors (unknown option, missing argument): one line ``error: ...`` on stderr, exit code 2;
* **a bug** — any other exception (``KeyError``, ``AttributeError``, a ``ValueError`` that no
  input check raised, ...): its traceback on stderr, exit code 1.

Only typer and rich are imported here: both are declared dependencies. ``click`` is not (recent
typer releases bundle their own copy of it), so it must never be imported directly.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import typer
from rich.console import Console

from syngeo.errors import InputError

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


def make_console(*, stderr: bool = False) -> Console:
    """A Rich console that wraps text only on a terminal.

    Piped or redirected output (a file, ``| less``, a notebook cell) is not cut at the 80
    columns Rich assumes without a terminal: text is written as whole lines (``soft_wrap``) and
    tables may be as wide as their content needs (up to 200 columns).
    """
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return probe
    return Console(stderr=stderr, soft_wrap=True, width=max(probe.width, 200))


console = make_console()
err_console = make_console(stderr=True)

# --------------------------------------------------------------------------------------------
# Help text: placeholders that say what to type, paragraphs that reflow
# --------------------------------------------------------------------------------------------

#: The placeholder shown after an option in ``--help``, by its type (typer's default is the
#: Python type in angle brackets: ``<bool>`` even for a flag, ``<list[str]>``).
_METAVARS = {"int": "INTEGER", "float": "NUMBER", "str": "TEXT", "Path": "PATH"}


def _metavar(param: Any) -> str:
    """The placeholder of one option: none for a flag, by type otherwise."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    bare = param.bare_type() if hasattr(param, "bare_type") else ""
    if bare.startswith("list[") and bare.endswith("]"):
        return f"{_METAVARS.get(bare[5:-1], 'VALUE')} (repeatable)"
    return _METAVARS.get(bare, "VALUE")


def _flag_help_option(cmd: Any) -> None:
    """Show ``--help`` without a placeholder (click builds that option per context)."""
    make = cmd.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = make(ctx)
        if option is not None:
            option.metavar = ""
        return option

    cmd.get_help_option = get_help_option


def unwrap_paragraphs(text: str) -> str:
    r"""Join the lines of each paragraph of a docstring, so that help reflows to the terminal.

    Paragraphs are separated by blank lines; a paragraph whose lines start with ``*``, ``-`` or
    an indent (a list, an example) keeps its line breaks.

    >>> unwrap_paragraphs("One line\nand the next.\n\n  syngeo demo\n  syngeo infer")
    'One line and the next.\n\n  syngeo demo\n  syngeo infer'
    """
    import inspect

    out = []
    for para in inspect.cleandoc(text).split("\n\n"):
        lines = para.splitlines()
        keep = any(line[:1] in (" ", "*", "-") for line in lines)
        out.append(para if keep else " ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def _polished_command(application: typer.Typer) -> Any:
    """The click command of ``application`` with help that says what to type.

    Each option gets a placeholder by type (none for a flag, none beside an argument's name);
    each command's docstring paragraphs are joined into reflowing lines.
    """
    for info in application.registered_commands:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            info.help = unwrap_paragraphs(info.callback.__doc__)
    command = typer.main.get_command(application)
    commands = getattr(command, "commands", {}) or {}
    for cmd in [command, *commands.values()]:
        for param in cmd.params:
            if param.param_type_name == "argument":
                # the help column already names it; no "<str>" beside the name
                param.display_type_rich = lambda ctx: ""
            elif param.metavar is None:
                param.metavar = _metavar(param)
        _flag_help_option(cmd)
    return command


#: Exceptions that mean "bad input": reported in one line with exit code 2. Everything else is
#: a bug and keeps its traceback (exit code 1).
INPUT_ERRORS: tuple[type[BaseException], ...] = (InputError, OSError)


def _click_base(cls: type[BaseException], name: str) -> type[BaseException]:
    """The ancestor of ``cls`` called ``name``.

    typer re-exports click's exception classes: click's own in older releases, its bundled copy
    (``typer._click``) in recent ones. Reaching the base class through a typer export works with
    both, without importing click.
    """
    for base in cls.__mro__:
        if base.__name__ == name:
            return base
    return cls  # pragma: no cover - every typer release so far has the click hierarchy


#: Usage errors (bad option, missing argument, bad value): click's ``ClickException`` family.
_USAGE_ERROR = _click_base(typer.BadParameter, "ClickException")


def fail(message: str) -> None:
    """Print ``error: message`` on stderr and exit with code 2."""
    # the message is printed as text, not Rich markup: "[vision]" or "[0, 1]" must survive
    err_console.print("[bold red]error:[/]", end=" ", highlight=False)
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)
    raise SystemExit(2)


def _one_line(exc: BaseException) -> str:
    text = str(exc) if str(exc) else type(exc).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``syngeo``): always ends with ``SystemExit``.

    Exit codes: 0 success, 1 a bug (traceback shown), 2 bad input or usage (one line), 130
    interrupted.
    """
    # Register the commands (import side effect) only when the CLI actually runs.
    from syngeo.app.cli import _commands  # noqa: F401

    try:
        rv = _polished_command(app)(args=argv, standalone_mode=False, prog_name="syngeo")
    except typer.Exit as exc:  # --help, --version, typer.Exit
        raise SystemExit(getattr(exc, "exit_code", 0)) from None
    except typer.Abort:
        err_console.print("aborted")
        raise SystemExit(130) from None
    except _USAGE_ERROR as exc:  # bad option, missing argument, bad value
        if hasattr(exc, "show"):
            exc.show()
        else:  # pragma: no cover - depends on the typer release
            err_console.print(f"[bold red]error:[/] {_one_line(exc)}", highlight=False)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err_console.print("interrupted: finished work is kept; rerun the same command to resume")
        raise SystemExit(130) from None
    except INPUT_ERRORS as exc:
        fail(_one_line(exc))
    except Exception:
        # Not an input error: a bug in syngeo (or in a library it calls). Show everything.
        traceback.print_exc()
        err_console.print(
            "[bold red]internal error:[/] this is a bug in syngeo, not a problem with your "
            "input; please report it with the traceback above",
            highlight=False,
        )
        raise SystemExit(1) from None
    if isinstance(rv, int) and rv != 0:
        raise SystemExit(rv)
    sys.exit(0)
