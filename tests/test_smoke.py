"""The package imports and exposes its version."""

import syngeo


def test_version_is_a_string():
    assert isinstance(syngeo.__version__, str) and syngeo.__version__.count(".") == 2
