"""Fixtures shared by several test modules."""

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch intra-op thread, restoring the setting afterwards.

    The Raman-model tests work on small matrices, where one thread is much faster than two on a
    loaded machine.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
