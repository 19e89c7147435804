"""syngeo.models (small networks, SimSiam loss) and syngeo.data.images (IDX, digits, folders)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from syngeo.data.images import ImageSet, load_digits_images, load_image_folder, load_mnist, read_idx
from syngeo.errors import DataFileError, InputError
from syngeo.models import RowRNN, SimSiam, SmallCNN, build_model, simsiam_loss


def test_shapes_and_feature_size():
    cnn = SmallCNN(width=3, n_classes=4, in_channels=2, image_size=10)
    assert cnn.feature_dim == 6 * 5 * 5
    assert cnn(torch.zeros(2, 2, 10, 10)).shape == (2, 4)
    rnn = RowRNN(hidden=5, n_classes=3, input_size=7)
    assert rnn(torch.zeros(4, 1, 6, 7)).shape == (4, 3)
    sim = SimSiam(SmallCNN(width=2), SmallCNN(width=2).feature_dim, dim=6, pred_dim=3)
    p1, _, z1, _ = sim(torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8))
    assert p1.shape == z1.shape == (3, 6)


def test_row_rnn_reads_one_row_per_step():
    # The readout sees the hidden state after the last row: changing only the last row changes
    # the output, and a network of width 1 with zero input weights ignores the image.
    torch.manual_seed(0)
    rnn = RowRNN(hidden=4, n_classes=2, input_size=3)
    x = torch.rand(1, 5, 3)
    y = x.clone()
    y[0, -1] += 1
    assert not torch.allclose(rnn(x), rnn(y))
    with torch.no_grad():
        rnn.rnn.weight_ih_l0.zero_()
    assert torch.allclose(rnn(x), rnn(y))


def test_simsiam_loss_closed_forms_and_stop_gradient():
    z = torch.randn(5, 4)
    assert float(simsiam_loss(z, z, z, z)) == pytest.approx(-1.0, abs=1e-6)
    assert float(simsiam_loss(-z, -z, z, z)) == pytest.approx(1.0, abs=1e-6)
    # orthogonal predictions: loss 0
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    assert float(simsiam_loss(a, a, b, b)) == pytest.approx(0.0, abs=1e-7)
    p1, p2 = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    z1, z2 = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    simsiam_loss(p1, p2, z1, z2).backward()
    assert z1.grad is None and z2.grad is None  # stop-gradient
    assert p1.grad is not None and p1.grad.abs().sum() > 0


def test_build_model():
    assert isinstance(build_model("cnn", width=2, n_classes=3), SmallCNN)
    assert isinstance(build_model("rnn", width=2), RowRNN)
    with pytest.raises(InputError):
        build_model("")
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="needs torchvision"):
            build_model("resnet18")
    else:
        with pytest.raises(InputError, match="unknown architecture"):
            build_model("no-such-net")
    with pytest.raises(InputError):
        SmallCNN(width=0)


# --- images ----------------------------------------------------------------------------------


def _idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype({0x08: ">u1", 0x0D: ">f4"}[code]).tobytes()


def _write_mnist(folder, n_train=6, n_test=4, side=5, gz=False):
    g = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = g.integers(0, 256, (n, side, side), dtype=np.uint8)
        labels = g.integers(0, 10, n, dtype=np.uint8)
        data[split] = (images, labels)
        for kind, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            raw = _idx_bytes(arr)
            name = f"{split}-{kind}" + (".gz" if gz else "")
            (folder / name).write_bytes(gzip.compress(raw) if gz else raw)
    return data


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_reads_the_idx_files(tmp_path, gz):
    data = _write_mnist(tmp_path / "mnist", gz=gz)
    train = load_mnist(tmp_path / "mnist", "train")
    test = load_mnist(tmp_path / "mnist", "test")
    images, labels = data["train"]
    assert train.images.shape == (6, 1, 5, 5) and len(test) == 4
    np.testing.assert_array_equal(train.images[:, 0].numpy() * 255, images.astype(np.float32))
    np.testing.assert_array_equal(train.labels.numpy(), labels)
    assert float(train.images.max()) <= 1.0


def test_read_idx_float_and_errors(tmp_path):
    arr = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    (tmp_path / "f.idx").write_bytes(_idx_bytes(arr, 0x0D))
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx"), arr)
    (tmp_path / "short.idx").write_bytes(_idx_bytes(arr, 0x0D)[:-3])
    with pytest.raises(DataFileError, match="truncated or corrupted"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataFileError, match="magic"):
        read_idx(tmp_path / "bad.idx")
    with pytest.raises(DataFileError, match="no such"):
        read_idx(tmp_path / "missing.idx")


def test_load_mnist_errors(tmp_path):
    with pytest.raises(DataFileError, match="no such folder"):
        load_mnist(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileError, match="no MNIST train files"):
        load_mnist(tmp_path / "empty")
    with pytest.raises(InputError):
        load_mnist(tmp_path / "empty", "validation")


def test_digits_and_splits():
    d = load_digits_images()
    assert len(d) == 1797 and d.images.shape[1:] == (1, 8, 8)
    assert 0 <= float(d.images.min()) and float(d.images.max()) == 1.0
    a, b = d.split(1000, rng=0)
    assert len(a) == 1000 and len(b) == 797
    ids = lambda s: {tuple(v) for v in s.images.flatten(1).numpy().round(4).tolist()}  # noqa: E731
    assert len(ids(a)) + len(ids(b)) >= len(ids(d))  # disjoint draws cover everything
    with pytest.raises(InputError):
        d.split(0)
    with pytest.raises(InputError):
        ImageSet(torch.zeros(2, 1, 3, 3), torch.zeros(3, dtype=torch.long), 2, "x")


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataFileError, match="no such folder"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileError, match="empty"):
        load_image_folder(tmp_path / "empty")


def test_image_folder_with_torchvision(tmp_path):
    pytest.importorskip("torchvision")
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "root" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (12, 10), (i * 50, 0, 0)).save(tmp_path / "root" / cls / f"{i}.png")
    d = load_image_folder(tmp_path / "root", size=8)
    assert d.images.shape == (4, 3, 8, 8) and d.n_classes == 2


def test_build_model_passes_the_width():
    assert build_model("rnn", width=5).rnn.hidden_size == 5
    assert build_model("cnn", width=3).conv1.out_channels == 3


def test_small_cnn_features_are_a_2x2_max_pool():
    # Centre-tap convolutions copy the image through both layers; a single bright pixel then
    # gives 1 in its pooled cell under a max pool (an average pool would give 1/4).
    cnn = SmallCNN(width=1, n_classes=2, image_size=4)
    with torch.no_grad():
        for conv in (cnn.conv1, cnn.conv2):
            conv.weight.zero_()
            conv.weight[:, :, 1, 1] = 1.0
            conv.bias.zero_()
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 0] = 1.0
    features = cnn.features(x)
    assert features.shape == (1, 2 * 2 * 2)
    expected = torch.tensor([[1.0, 0, 0, 0, 1.0, 0, 0, 0]])
    torch.testing.assert_close(features, expected)
