"""``syngeo infer``."""
