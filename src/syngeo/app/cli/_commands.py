"""Import every command module so that each registers itself on the app."""

from syngeo.app.cli import demo, fit_spines, infer, reproduce  # noqa: F401
