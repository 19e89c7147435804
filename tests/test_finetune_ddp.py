"""Data-parallel finetuning (DDP, gloo over loopback) gives the weights of one process.

Two CPU processes split every global batch of :func:`syngeo.finetune.finetune_one` in halves;
the gradient DDP averages is then the mean gradient of the global batch (module docstring of
syngeo.finetune), so the final weights must equal a one-process run on the same global batches.
float64 model and data: the only difference is the order of the sums (two partial sums added by
the all-reduce instead of one), a relative rounding of ~1e-16 per step, grown by at most a
modest factor over the 15 steps here, so 1e-10 is a wide bound that a wrong scaling (a factor
of 2 in the loss, a missing sample, per-rank means over unequal halves) exceeds by many orders.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
from torch import nn

from syngeo.finetune import FinetuneProtocol, finetune_one
from tinynets import TinyNet, classification_data

PROTOCOL = FinetuneProtocol(lrs=(0.05, 0.2), epochs=5, max_extensions=0, batch_size=16)
N_SAMPLES = 41  # global batches of 16, 16, 9: the last one splits 5 / 4 over the two ranks


def _setup():
    x, y = classification_data(N_SAMPLES, seed=0)
    torch.manual_seed(1)
    return TinyNet().double(), x, y


def _worker(rank: int, world: int, init_file: str, out: str, potential: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model, x, y = _setup()
        run = finetune_one(model, (x, y), potential, protocol=PROTOCOL, seed=7)
        if rank == 0:
            torch.save(
                {"final": run.final, "lr": run.lr, "accuracy": run.accuracy, "loss": run.loss}, out
            )
    finally:
        dist.destroy_process_group()


def _loopback_available() -> bool:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
@pytest.mark.skipif(not _loopback_available(), reason="no loopback interface")
@pytest.mark.parametrize("potential", ["3-norm"])
def test_two_gloo_processes_give_the_weights_of_one(tmp_path, potential):
    import torch.multiprocessing as mp

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), out, potential), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    model, x, y = _setup()
    single = finetune_one(model, (x, y), potential, protocol=PROTOCOL, seed=7)
    assert ddp["lr"] == single.lr
    assert ddp["accuracy"] == pytest.approx(single.accuracy, abs=1e-12)
    assert ddp["loss"] == pytest.approx(single.loss, rel=1e-10)
    changed = False
    for name, value in single.final.items():
        torch.testing.assert_close(ddp["final"][name], value, rtol=1e-10, atol=1e-12)
        changed |= not torch.equal(value, model.state_dict()[name])
    assert changed  # the runs did learn something


class _BatchNormNet(TinyNet):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(12)

    def forward(self, x):
        return self.fc(torch.tanh(self.norm(self.hidden(x))))


def test_batch_norm_over_several_cpu_processes_is_refused():
    """torch's SyncBatchNorm is GPU-only: per-rank statistics would silently break the
    one-process equivalence, so a CPU data-parallel run of a batch-norm model is refused."""
    from syngeo.errors import InputError
    from syngeo.finetune import _with_global_batch_norm

    with pytest.raises(InputError, match=r"batch-norm layers \(norm\).*GPUs only"):
        _with_global_batch_norm(_BatchNormNet(), torch.device("cpu"))
    plain = TinyNet()
    assert _with_global_batch_norm(plain, torch.device("cpu")) is plain


def test_batch_norm_is_synchronised_on_gpus():
    """On a CUDA device the layers become SyncBatchNorm sharing the original parameters
    (the conversion itself needs no GPU; the forward pass does)."""
    from syngeo.finetune import _with_global_batch_norm

    model = _BatchNormNet()
    weight = model.norm.weight
    converted = _with_global_batch_norm(model, torch.device("cuda", 0))
    assert isinstance(converted.norm, nn.SyncBatchNorm)
    assert converted.norm.weight is weight
