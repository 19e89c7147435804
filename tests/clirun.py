"""Running the command line in-process, as a user would (imported by the CLI tests)."""

from __future__ import annotations

import pytest


def run_cli(args, capsys) -> tuple[int, str, str]:
    """Run the console entry point with ``args``; return (exit code, stdout, stderr).

    ``main`` always ends with ``SystemExit`` (returning is a failure); a non-integer exit code
    counts as 1, as the shell sees it.
    """
    from syngeo.app.cli import main

    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def assert_bad_input(code: int, out: str, err: str, pattern: str) -> None:
    """Bad input: exit code 2, no traceback, one line ``error: ...`` on stderr that contains
    ``pattern`` (case and runs of whitespace ignored)."""
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    assert pattern.lower() in " ".join(lines[0].split()).lower(), lines[0]
