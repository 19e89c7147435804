"""The ``syngeo`` command line (typer + rich). See ``syngeo --help``."""

from syngeo.app.cli._app import app, main

__all__ = ["app", "main"]
