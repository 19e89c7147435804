"""syngeo.finetune: the B.3 protocol, the reading of the change, checkpoints.

Reference values come from independent code paths: a hand-written ``torch.optim.SGD`` loop for
the 2-norm protocol (MirrorDescent at p = 2 is SGD by construction, docs/theory.md §1), and the
one-synapse-set functions of :mod:`syngeo.gaussianity` / :mod:`syngeo.inference` for the reading.
Models are float64 so that equivalences hold to ~1e-12 (summation order is the only difference).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import syngeo
from syngeo.errors import DataFileError, InputError
from syngeo.finetune import (
    FinetuneProtocol,
    classification_objective,
    finetune,
    finetune_one,
    load_state_dict_file,
    read_change,
)
from syngeo.inference import change_log_likelihood
from syngeo.models import SmallCNN
from tinynets import TinyNet, classification_data


def _data(n=40, seed=0):
    return classification_data(n, seed)


def _model(seed=1):
    torch.manual_seed(seed)
    return TinyNet().double()


def _reference_sgd(model, x, y, lr, epochs, batch_size, seed, momentum=0.9):
    """The protocol written out with torch.optim.SGD: per-epoch permutation from
    (seed * 1_000_003 + epoch), mean cross-entropy per batch, cosine annealing per epoch."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    for epoch in range(epochs):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        for idx in torch.randperm(x.shape[0], generator=gen).split(batch_size):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    return model


def test_two_norm_protocol_equals_a_plain_sgd_loop():
    x, y = _data(42)
    model = _model()
    protocol = FinetuneProtocol(lrs=(0.05,), epochs=7, max_extensions=0, batch_size=16)
    run = finetune_one(model, (x, y), "2-norm", protocol=protocol, seed=3)
    ref = _reference_sgd(_model(), x, y, 0.05, 7, 16, 3)
    for name, value in ref.state_dict().items():
        torch.testing.assert_close(run.final[name], value, rtol=1e-12, atol=1e-12)
    # the model passed in is not modified
    for name, value in _model().state_dict().items():
        assert torch.equal(model.state_dict()[name], value)


def test_the_sample_order_depends_on_the_seed():
    x, y = _data(42)
    protocol = FinetuneProtocol(lrs=(0.05,), epochs=3, max_extensions=0, batch_size=16)
    a = finetune_one(_model(), (x, y), "2-norm", protocol=protocol, seed=0).final
    b = finetune_one(_model(), (x, y), "2-norm", protocol=protocol, seed=1).final
    assert not torch.allclose(a["hidden.weight"], b["hidden.weight"])


def test_learning_rate_grid_and_epoch_extension_are_logged():
    x, y = _data(60)
    # Random labels on 60 points: 2 epochs cannot reach 100 %: every round runs.
    protocol = FinetuneProtocol(lrs=(1e-4, 1e-2), epochs=2, max_extensions=2, batch_size=32)
    run = finetune_one(_model(), (x, y), "3-norm", protocol=protocol)
    log = run.log
    assert len(log) == 2 * 3
    assert list(log["epochs"]) == [2, 2, 4, 4, 6, 6]
    assert list(log["round"]) == [0, 0, 1, 1, 2, 2]
    assert list(log["lr"]) == [1e-4, 1e-2] * 3
    assert not run.reached_target
    # the kept run is the best by (accuracy, then loss)
    ok = log[~log["diverged"]]
    best = ok.sort_values(["accuracy", "loss"], ascending=[False, True]).iloc[0]
    assert (run.lr, run.epochs) == (best["lr"], best["epochs"])
    assert run.accuracy == best["accuracy"] and run.loss == best["loss"]


def test_no_extension_once_the_target_is_reached():
    x, y = _data(20)
    protocol = FinetuneProtocol(lrs=(0.3,), epochs=60, max_extensions=3, batch_size=20)
    run = finetune_one(_model(), (x, y), "2-norm", protocol=protocol)
    assert run.reached_target and run.accuracy == 1.0
    assert len(run.log) == 1


def test_a_target_below_one_stops_earlier():
    x, y = _data(60)
    protocol = FinetuneProtocol(
        lrs=(1e-2,), epochs=2, max_extensions=2, batch_size=32, target_accuracy=0.0
    )
    assert len(finetune_one(_model(), (x, y), "2-norm", protocol=protocol).log) == 1


def _linear():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 3)).double()


def _squared_error(model, x, y):
    out = model(x)
    return ((out - nn.functional.one_hot(y, out.shape[1])) ** 2).sum(1), out.argmax(1) == y


def test_diverging_rates_are_skipped_and_all_diverging_is_an_error():
    # A linear model on a squared error: a rate of 1e306 overflows to inf, then NaN.
    x, y = _data(40)
    protocol = FinetuneProtocol(lrs=(1e-3, 1e306), epochs=3, max_extensions=0, batch_size=20)
    run = finetune_one(_linear(), (x, y), "2-norm", protocol=protocol, objective=_squared_error)
    assert run.lr == 1e-3
    assert list(run.log["diverged"]) == [False, True]
    with pytest.raises(InputError, match="diverged"):
        finetune_one(
            _linear(),
            (x, y),
            "2-norm",
            objective=_squared_error,
            protocol=FinetuneProtocol(lrs=(1e306,), epochs=3, max_extensions=0, batch_size=20),
        )


def test_negative_entropy_training_keeps_every_sign():
    x, y = _data(40)
    protocol = FinetuneProtocol(lrs=(0.1,), epochs=5, max_extensions=0, batch_size=20)
    result = finetune(_model(), (x, y), ["NE", "2-norm"], protocol=protocol)
    pooled = result.table[result.table["layer"] == "pooled"].set_index(
        ["trained_with", "read_with"]
    )
    assert pooled.loc[("NE", "NE"), "n_sign_flips"] == 0
    assert pooled.loc[("NE", "NE"), "n_excluded"] == 0


def _reads(seed=0, n=3000):
    """Weights whose change is Gaussian in 3-norm duals (and so not in the others)."""
    g = np.random.default_rng(seed)
    w0 = g.normal(0, 0.1, n)
    u = np.sign(w0) * w0**2 + 0.002 * g.normal(size=n)
    w = np.sign(u) * np.sqrt(np.abs(u))
    before = {
        "a.weight": torch.tensor(w0[: n // 3].reshape(-1, 10)),
        "b.weight": torch.tensor(w0[n // 3 :].reshape(-1, 10)),
    }
    after = {
        "a.weight": torch.tensor(w[: n // 3].reshape(-1, 10)),
        "b.weight": torch.tensor(w[n // 3 :].reshape(-1, 10)),
    }
    return before, after, w0, w


def test_read_change_matches_the_one_set_functions():
    before, after, w0, w = _reads()
    table = read_change(before, after, ["2-norm", "3-norm", "NE"], layers=("a.weight", "b.weight"))
    t = table.set_index(["read_with", "layer"])
    assert set(t.index.get_level_values("layer")) == {"a.weight", "b.weight", "pooled"}
    for psi in ("2-norm", "3-norm"):
        row = t.loc[(psi, "pooled")]
        assert row["n"] == w0.size and row["n_excluded"] == 0
        assert row["cdf_distance"] == pytest.approx(
            syngeo.cdf_distance(syngeo.dual_change(w0, w, psi)), rel=1e-12
        )
        assert row["magnitude"] == pytest.approx(syngeo.change_magnitude(w0, w, psi), rel=1e-12)
        ll = change_log_likelihood(w0, w, psi)
        assert row["log_likelihood"] == pytest.approx(ll.log_likelihood / ll.n, rel=1e-12)
        a = t.loc[(psi, "a.weight")]
        assert a["n"] == w0.size // 3
        assert a["cdf_distance"] == pytest.approx(
            syngeo.cdf_distance(syngeo.dual_change(w0[:1000], w[:1000], psi)), rel=1e-12
        )
    flips = syngeo.sign_changes(w0, w).n_sign_flips
    assert flips > 0  # the planted change flips some small weights
    ne = t.loc[("NE", "pooled")]
    assert ne["n_excluded"] == flips and ne["n"] == w0.size - flips
    keep = np.sign(w0) == np.sign(w)
    assert ne["cdf_distance"] == pytest.approx(
        syngeo.cdf_distance(syngeo.dual_change(w0[keep], w[keep], "NE")), rel=1e-12
    )
    assert t.loc[("2-norm", "pooled"), "n_sign_flips"] == flips
    # the true potential is read best by both statistics
    pooled = table[table.layer == "pooled"].set_index("read_with")
    assert pooled["cdf_distance"].idxmin() == "3-norm"
    assert pooled["log_likelihood"].idxmax() == "3-norm"


def test_read_change_default_layers_leave_out_biases_and_readout():
    model = SmallCNN(width=2)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    after = {k: v + 0.01 * torch.randn_like(v) for k, v in state.items()}
    table = read_change(state, after, ["2-norm"])
    assert set(table["layer"]) == {"conv1.weight", "conv2.weight", "pooled"}


def test_read_change_errors():
    before, after, _, _ = _reads()
    with pytest.raises(InputError, match="candidate"):
        read_change(before, after, [])
    with pytest.raises(InputError, match="not in both"):
        read_change(before, {"a.weight": after["a.weight"]}, ["2-norm"], layers=("b.weight",))
    with pytest.raises(InputError):
        read_change(before, after, ["no-such-potential"])


def test_finetune_writes_initial_and_final_weights(tmp_path):
    from safetensors.torch import load_file

    x, y = _data(30)
    model = _model()
    protocol = FinetuneProtocol(lrs=(0.05,), epochs=2, max_extensions=0, batch_size=10)
    result = finetune(model, (x, y), ["2-norm", "3-norm"], protocol=protocol, out=tmp_path)
    assert set(result.files) == {"initial", "final-2-norm", "final-3-norm"}
    initial = load_file(str(tmp_path / "initial.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(initial[k], v)
    final = load_file(str(tmp_path / "final-3-norm.safetensors"))
    for k, v in result.runs["3-norm"].final.items():
        assert torch.equal(final[k], v)
    m = result.distance_matrix()
    assert list(m.index) == ["2-norm", "3-norm"] and list(m.columns) == ["2-norm", "3-norm"]
    assert result.layers == ("hidden.weight",)
    assert len(result.log) == 2


def test_finetune_input_errors():
    x, y = _data(10)
    with pytest.raises(InputError, match="distinct"):
        finetune(_model(), (x, y), ["2-norm", "2-norm"])
    with pytest.raises(InputError, match="non-empty"):
        finetune(_model(), (x, y), [])
    with pytest.raises(InputError, match="labels"):
        finetune_one(_model(), (x, y[:5]), "2-norm")
    with pytest.raises(InputError, match="empty"):
        finetune_one(_model(), (x[:0], y[:0]), "2-norm")
    with pytest.raises(InputError):
        finetune_one(_model(), "not data", "2-norm")
    for bad in (
        {"lrs": ()},
        {"lrs": (-1.0,)},
        {"epochs": 0},
        {"momentum": 1.0},
        {"batch_size": 0},
        {"max_extensions": -1},
        {"target_accuracy": 1.5},
    ):
        with pytest.raises(InputError):
            FinetuneProtocol(**bad)


def test_paper_defaults():
    p = FinetuneProtocol()
    assert p.lrs == (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    assert (p.epochs, p.max_extensions, p.max_epochs) == (30, 4, 150)
    assert (p.batch_size, p.momentum, p.target_accuracy) == (256, 0.9, 1.0)


def test_classification_objective_is_per_sample_cross_entropy():
    model = _model()
    x, y = _data(8)
    with torch.no_grad():
        losses, correct = classification_objective(model, x, y)
        assert losses.shape == (8,)
        expected = nn.functional.cross_entropy(model(x), y)
        assert float(losses.mean()) == pytest.approx(float(expected), rel=1e-12)
        assert torch.equal(correct, model(x).argmax(1) == y)


# --- checkpoints -----------------------------------------------------------------------------


def test_load_state_dict_file_formats(tmp_path):
    from safetensors.torch import save_file

    src = _model(5)
    state = src.state_dict()
    cases = {
        "plain.pt": state,
        "ddp.pth": {f"module.{k}": v for k, v in state.items()},
        "lightning.ckpt": {"state_dict": state, "epoch": 3},
        "timm.bin": {"model": state, "optimizer": {"lr": torch.tensor(0.1)}},
    }
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    for name in [*cases, "w.safetensors"]:
        dst = load_state_dict_file(_model(6), tmp_path / name)
        for k, v in state.items():
            assert torch.equal(dst.state_dict()[k], v), name


def test_load_state_dict_file_errors(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        load_state_dict_file(_model(), tmp_path / "missing.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a zip file at all")
    with pytest.raises(DataFileError, match="cannot read"):
        load_state_dict_file(_model(), tmp_path / "broken.pt")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(DataFileError, match="unknown file type"):
        load_state_dict_file(_model(), tmp_path / "w.txt")
    torch.save(SmallCNN(width=2).state_dict(), tmp_path / "cnn.pt")
    with pytest.raises(InputError, match="does not fit the TinyNet") as info:
        load_state_dict_file(_model(), tmp_path / "cnn.pt")
    assert "missing" in str(info.value) and "unexpected" in str(info.value)
    wide = SmallCNN(width=3)
    torch.save(wide.state_dict(), tmp_path / "wide.pt")
    with pytest.raises(InputError, match="other shapes"):
        load_state_dict_file(SmallCNN(width=2), tmp_path / "wide.pt")
    torch.save({"model": nn.Linear(2, 2)}, tmp_path / "pickled.pt")
    with pytest.raises(DataFileError, match=r"refused|cannot read"):
        load_state_dict_file(_model(), tmp_path / "pickled.pt")


def test_torchvision_checkpoint_when_installed(tmp_path):
    pytest.importorskip("torchvision")
    from syngeo.models import build_model

    net = build_model("resnet18", n_classes=4)
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    loaded = load_state_dict_file(build_model("resnet18", n_classes=4), tmp_path / "r18.pth")
    assert torch.equal(loaded.state_dict()["conv1.weight"], net.state_dict()["conv1.weight"])


def test_finetune_is_finite_on_a_cnn():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)
    result = finetune(
        SmallCNN(width=2),
        (x, y),
        ["2-norm", "NE"],
        protocol=FinetuneProtocol(lrs=(0.05,), epochs=2, max_extensions=0, batch_size=16),
    )
    pooled = result.table[result.table.layer == "pooled"]
    assert np.isfinite(pooled[["cdf_distance", "log_likelihood", "magnitude"]].to_numpy()).all()
    assert not math.isnan(result.runs["NE"].accuracy)


def test_the_mixed_precision_branch_trains_like_float32(monkeypatch):
    """The AMP branch of the training loop (float16 autocast + GradScaler, CUDA-only in use)
    run on CPU, where torch has both: the loss is scaled (the scaler sees its scale), unscaled
    before the mirror step, and the weight change follows the float32 run. Error analysis:
    float16 rounds each forward product to 2^-11 ≈ 5e-4 relative; the gradients of a two-layer
    network carry a few of those, so the change over 8 steps differs by well under 3 %, while
    a missed unscale (×2^10) or a loss left in float16 breaks it."""
    from syngeo import finetune as ft

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)
    protocol = FinetuneProtocol(lrs=(0.05,), epochs=2, max_extensions=0, batch_size=16)
    runs = {}
    scales = []
    for amp in (False, True):
        if amp:

            def mixed(protocol, device):
                scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
                original = scaler.step
                scaler.step = lambda opt: scales.append(scaler.get_scale()) or original(opt)
                return torch.float16, scaler

            monkeypatch.setattr(ft, "_mixed_precision", mixed)
        torch.manual_seed(1)
        model = TinyNet()
        runs[amp] = (finetune_one(model, (x, y), "3-norm", protocol=protocol, seed=2), model)
    assert scales and set(scales) == {2.0**10}  # every step saw the scaled loss, none inf
    for name, w0 in runs[False][1].state_dict().items():
        change32 = runs[False][0].final[name] - w0
        change16 = runs[True][0].final[name] - w0
        assert float((change16 - change32).norm()) <= 0.03 * float(change32.norm()), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_finetune_on_cuda_uses_amp_and_follows_the_cpu_run():
    """On a GPU the protocol's mixed precision is on by default (float16 autocast + GradScaler);
    the weight change follows the float32 CPU run within the 3 % of the CPU AMP test."""
    from syngeo import finetune as ft

    assert ft._mixed_precision(FinetuneProtocol(), torch.device("cuda"))[0] is torch.float16
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)
    protocol = FinetuneProtocol(lrs=(0.05,), epochs=2, max_extensions=0, batch_size=16)
    runs = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(1)
        model = TinyNet()
        runs[device] = (finetune_one(model, (x, y), "3-norm", protocol=protocol, seed=2,
                                     device=device), model)  # fmt: skip
    for name, w0 in runs["cpu"][1].state_dict().items():
        change32 = runs["cpu"][0].final[name] - w0
        change16 = runs["cuda"][0].final[name].cpu() - w0
        assert float((change16 - change32).norm()) <= 0.03 * float(change32.norm()), name


def test_simsiam_objective_is_the_per_sample_simsiam_loss():
    from syngeo.finetune import simsiam_objective
    from syngeo.models import SimSiam, simsiam_loss

    torch.manual_seed(0)
    model = SimSiam(SmallCNN(width=2), SmallCNN(width=2).feature_dim, dim=6, pred_dim=3)
    x = torch.rand(5, 1, 8, 8)

    def shift(batch, gen):
        return batch + 0.1 * torch.randn(batch.shape, generator=gen)

    losses, correct = simsiam_objective(shift, seed=3)(model, x, torch.zeros(5))
    assert correct is None and losses.shape == (5,)
    g = torch.Generator().manual_seed(3)
    x1, x2 = shift(x, g), shift(x, g)
    expected = simsiam_loss(*model(x1, x2))
    assert float(losses.mean()) == pytest.approx(float(expected), rel=1e-6)
