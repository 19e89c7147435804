"""The CLI's error boundary: usage errors and bad input are one short message and exit code 2."""

import re
import subprocess
import sys

import pytest

import syngeo
from clirun import run_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["reproduce", "--bogus"], "No such option"),
        (["infer"], "Missing argument"),
        (["no-such-command"], "No such command"),
        (["reproduce", "no-such-figure"], "unknown experiment"),
    ],
)
def test_usage_errors_exit_2_without_traceback(args, message, capsys):
    code, out, err = run_cli(args, capsys)
    assert code == 2
    assert message in out + err
    assert "Traceback" not in out + err


def test_version_and_help_exit_0(capsys):
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"syngeo {syngeo.__version__}"
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0 and "reproduce" in out and "infer" in out and "demo" in out


def test_console_script_usage_error_is_one_message():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from syngeo.app.cli import main; main()",
            "infer",
            "--bogus",
            "a",
            "b",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "No such option" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- bad input (exit 2, one line) versus bugs (exit 1, traceback) --------------------------------


def _patch_infer(monkeypatch, exc: BaseException) -> None:
    import syngeo.app.cli.infer as infer_module

    def broken(*args, **kwargs):
        raise exc

    monkeypatch.setattr(infer_module, "run_infer", broken)


@pytest.mark.parametrize(
    "exc",
    [
        KeyError("weights"),
        ValueError("a ValueError that no input check raised"),
        TypeError("unsupported operand"),
        AttributeError("'NoneType' object has no attribute 'values'"),
        RuntimeError("boom"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_bug_inside_a_command_shows_its_traceback_and_exits_1(monkeypatch, capsys, exc):
    _patch_infer(monkeypatch, exc)
    code, _out, err = run_cli(["infer", "before.csv", "after.csv"], capsys)
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert f"{type(exc).__name__}: " in err
    assert "bug in syngeo" in err
    assert not err.startswith("error:")


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (syngeo.InputError("n_bootstrap must be >= 0, got -1"), "n_bootstrap must be >= 0, got -1"),
        (syngeo.InputTypeError("n must be an integer"), "n must be an integer"),
        (syngeo.DomainError("weights change sign\nunder NE"), "weights change sign under NE"),
        (syngeo.DataFileError("x.csv: no column 'w'"), "x.csv: no column 'w'"),
        (FileNotFoundError("x.csv: no such file"), "x.csv: no such file"),
        (PermissionError("x.csv: permission denied"), "x.csv: permission denied"),
    ],
    ids=lambda e: type(e).__name__ if isinstance(e, BaseException) else "",
)
def test_input_errors_are_one_line_and_exit_2(monkeypatch, capsys, exc, message):
    _patch_infer(monkeypatch, exc)
    code, out, err = run_cli(["infer", "before.csv", "after.csv"], capsys)
    assert code == 2
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert lines == [f"error: {message}"], err


def test_console_script_bug_exits_1_with_traceback():
    script = (
        "import syngeo.app.cli.infer as m\n"
        "def broken(*a, **k):\n"
        "    return {}['missing']\n"
        "m.run_infer = broken\n"
        "from syngeo.app.cli import main\n"
        "main(['infer', 'a.csv', 'b.csv'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "KeyError: 'missing'" in proc.stderr


def test_running_the_cli_does_not_import_click():
    """``click`` is not a dependency (recent typer bundles its own copy): ``syngeo --help`` must
    not import it. Run in a fresh interpreter, so that nothing else imported it first. With an
    older typer that is built on click itself, typer imports it and the check has no meaning."""
    import typer

    if typer.BadParameter.__module__.split(".")[0] == "click":
        pytest.skip("this typer release is built on click")
    script = (
        "import sys\n"
        "from syngeo.app.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print('click modules:', sorted(m for m in sys.modules if m.split('.')[0] == 'click'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "click modules: []" in proc.stdout, proc.stdout


# -- help and terminal output -------------------------------------------------------------------

COMMANDS = ["infer", "demo", "reproduce", "fit-spines", "power", "finetune"]


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)], ids=lambda c: " ".join(c))
def test_help_has_plain_placeholders(command, capsys):
    code, out, _ = run_cli([*command, "--help"], capsys)
    assert code == 0
    # typer's defaults were Python types in angle brackets, even for flags
    for placeholder in ("<bool>", "<list[", "<str>", "<int>", "<float>", "<path>"):
        assert placeholder not in out, (placeholder, out)
    # a flag has no placeholder: the --help row is "--help  Show this message and exit."
    assert re.search(r"--help\s+Show this message", out), out


def test_reproduce_help_shows_the_default_output_folder(capsys):
    _code, out, _ = run_cli(["reproduce", "--help"], capsys)
    text = " ".join(out.replace("│", " ").split())
    assert "[default: (./syngeo-NAME, or ./syngeo-NAME-quick with --quick)]" in text, text
    assert "--out -o PATH" in text and "--workers -j INTEGER" in text
    assert "--quick Small preset" in text and "--force Replace" in text  # flags: no placeholder


def test_docstring_paragraphs_reflow_in_help(capsys):
    _code, out, _ = run_cli(["reproduce", "--help"], capsys)
    # the docstring breaks this sentence after "interrupted run is"; help joins the lines
    assert "interrupted run is resumed" in " ".join(out.split())
    assert not re.search(r"interrupted run is *│? *\n", out), (
        out
    )  # no break where the source has one


def test_piped_output_is_not_wrapped():
    line = "a long message " * 30  # 450 characters: far wider than the 80 Rich assumes
    script = (
        "from syngeo.app.cli._app import console, err_console\n"
        f"console.print({line!r})\n"
        f"err_console.print({line!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [line] or proc.stdout.rstrip() == line.rstrip()
    assert len(proc.stdout.splitlines()) == 1 and len(proc.stderr.splitlines()) == 1
    assert proc.stderr.rstrip() == line.rstrip()


@pytest.mark.parametrize("module", ["reproduce", "fit_spines", "power", "finetune"])
def test_examples_fit_an_80_column_help_page(module):
    import importlib

    epilog = importlib.import_module(f"syngeo.app.cli.{module}")._EPILOG
    examples = [line for line in epilog.splitlines() if line.startswith("  ")]
    assert examples
    for line in examples:
        assert len(line) <= 76, f"{line!r} wraps in an 80-column help page"


def _options_by_command():
    """``{command: {option name: click parameter}}`` of every registered command."""
    from syngeo.app.cli import _commands  # noqa: F401 - registers the commands
    from syngeo.app.cli._app import _polished_command, app

    group = _polished_command(app)
    return {
        name: {opt: param for param in cmd.params for opt in param.opts}
        for name, cmd in group.commands.items()
    }


@pytest.mark.parametrize(
    ("option", "commands"),
    [
        ("--json", COMMANDS),
        ("--quiet", ["infer", "demo", "reproduce", "fit-spines", "power"]),
        ("--workers", ["reproduce", "fit-spines", "power"]),
        ("--bootstrap", ["infer", "demo"]),
        ("--estimator", ["infer", "demo"]),
    ],
)
def test_a_shared_option_reads_the_same_in_every_command(option, commands):
    """Options declared once (syngeo.app.cli._options) have one help text and short form."""
    options = _options_by_command()
    rows = {c: (options[c][option].help, tuple(options[c][option].opts)) for c in commands}
    assert len(set(rows.values())) == 1, rows


def test_force_says_whether_a_rerun_resumes():
    """A sweep resumes without --force, so its --force is only for a different run."""
    options = _options_by_command()
    helps = {c: options[c]["--force"].help for c in COMMANDS}
    sweeps = {"reproduce", "power"}
    assert {helps[c] for c in sweeps} == {"Replace the results of a different run in --out."}
    assert {helps[c] for c in set(COMMANDS) - sweeps} == {"Replace earlier results in --out."}


def test_the_estimators_named_for_help_are_those_of_the_inference():
    from syngeo.app.cli.infer import ESTIMATORS
    from syngeo.inference import ESTIMATORS as CORE

    assert ESTIMATORS == CORE
