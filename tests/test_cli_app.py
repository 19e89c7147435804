"""The CLI's error boundary: usage errors and bad input are one short message and exit code 2."""

import subprocess
import sys

import pytest

from syngeo.app.cli import main


def run_main(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


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
    code, out, err = run_main(args, capsys)
    assert code == 2
    assert message in out + err
    assert "Traceback" not in out + err


def test_version_and_help_exit_0(capsys):
    code, out, _ = run_main(["--version"], capsys)
    assert code == 0 and out.startswith("syngeo ")
    code, out, _ = run_main(["--help"], capsys)
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
