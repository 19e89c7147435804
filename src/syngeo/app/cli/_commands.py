"""Import every command module so that each registers itself on the app."""

from syngeo.app.cli import demo, finetune, fit_spines, infer, power, reproduce  # noqa: F401
