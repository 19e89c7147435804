"""``syngeo demo``."""
