"""``syngeo reproduce``."""
