"""Tests of student-teacher tasks and expansions (syngeo.expansion): invariants by autodiff."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from syngeo.bounds import hessian_trace, loss_geometry
from syngeo.expansion import (
    LinearTask,
    SigmoidMLP,
    expand_linear,
    expand_sigmoid,
    init_sigmoid_mlp,
    make_linear_task,
    make_sigmoid_task,
    semi_orthogonal,
)

D = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_linear_task_loss_is_the_average_over_inputs():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(4, 37, generator=g, dtype=D)
    teacher = torch.randn(3, 4, generator=g, dtype=D)
    W = torch.randn(3, 4, generator=g, dtype=D)
    task = LinearTask(teacher, X @ X.T / 37)
    direct = 0.5 * ((teacher @ X - W @ X) ** 2).sum(dim=0).mean()
    assert task.loss(W).item() == pytest.approx(direct.item(), rel=1e-12)
    # closed-form gradient and Hessian trace against autodiff
    auto = torch.func.grad(task.loss)(W)
    assert torch.allclose(task.grad(W), auto)
    assert task.hessian_trace() == pytest.approx(hessian_trace(task.loss, W), rel=1e-10)


@pytest.mark.parametrize("rows, cols", [(5, 5), (12, 3), (40, 10)])
def test_semi_orthogonal(rows, cols):
    Q = semi_orthogonal(rows, cols, rng=1)
    assert Q.shape == (rows, cols)
    assert torch.allclose(Q.T @ Q, torch.eye(cols, dtype=D), atol=1e-12)


@pytest.mark.parametrize("c1, c2", [(1, 1), (2, 1), (1, 3), (3, 2)])
def test_linear_expansion_invariants(c1, c2):
    task = make_linear_task(6, 4, n_samples=200, rng=2)
    W = torch.randn(4, 6, generator=torch.Generator().manual_seed(3), dtype=D)
    ex = expand_linear(W, c1, c2, rng=4, task=task)
    assert ex.weights.shape == (c2 * 4, c1 * 6)
    assert ex.n_synapses == c1 * c2 * 24
    assert torch.allclose(ex.contract(ex.weights), W, atol=1e-12)  # W = Dᵀ W' B
    small = loss_geometry(task.loss, W, trace="exact")
    big = loss_geometry(ex.task.loss, ex.weights, trace="exact")  # autodiff, N HVPs
    assert big.loss == pytest.approx(small.loss, rel=1e-10)
    assert big.grad_norm == pytest.approx(small.grad_norm, rel=1e-10)
    assert big.grad_curvature == pytest.approx(small.grad_curvature, rel=1e-10)
    assert big.hessian_trace == pytest.approx(c2 * small.hessian_trace, rel=1e-10)
    assert ex.task.grad_curvature(ex.weights) == pytest.approx(task.grad_curvature(W), rel=1e-10)


def test_expanded_task_is_the_same_task_on_embedded_inputs():
    # x' = B x and teacher D W* Bᵀ: the expanded teacher's outputs are D y*(x)
    task = make_linear_task(5, 3, n_samples=50, rng=5)
    ex = expand_linear(torch.zeros(3, 5, dtype=D), 2, 3, rng=6, task=task)
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(7), dtype=D)
    assert torch.allclose(ex.task.teacher @ (ex.B @ x), ex.D @ (task.teacher @ x), atol=1e-12)
    assert torch.allclose(ex.task.input_covariance, ex.B @ task.input_covariance @ ex.B.T)


def test_readout_parametrisation_does_not_scale_the_trace():
    # The alternative reading y = Dᵀ W' B x (error on the original o outputs): Tr H is unchanged,
    # so the factor c2 comes from measuring the error on all c2·o outputs (module docstring).
    task = make_linear_task(4, 3, n_samples=100, rng=8)
    W = torch.randn(3, 4, generator=torch.Generator().manual_seed(9), dtype=D)
    ex = expand_linear(W, 2, 3, rng=10, task=task)

    def readout_loss(Wp):
        return task.loss(ex.D.T @ Wp @ ex.B)

    assert readout_loss(ex.weights).item() == pytest.approx(task.loss(W).item())
    assert hessian_trace(readout_loss, ex.weights) == pytest.approx(task.hessian_trace(), rel=1e-10)


def test_sigmoid_expansion_keeps_function_and_loss():
    teacher = init_sigmoid_mlp([6, 4, 3], rng=11)
    task = make_sigmoid_task(teacher, n_samples=80, rng=12)
    net = init_sigmoid_mlp([6, 4, 5, 3], rng=13)
    big = expand_sigmoid(net, [9, 12])
    assert big.sizes == (6, 9, 12, 3)
    assert big.n_synapses == 9 * 7 + 12 * 10 + 3 * 13
    x = torch.randn(20, 6, generator=torch.Generator().manual_seed(14), dtype=D)
    assert torch.allclose(big(x), net(x), atol=1e-14)
    assert task.loss(big.weights).item() == pytest.approx(task.loss(net.weights).item(), rel=1e-14)
    # the new synapses are exactly zero; the old ones are where they were
    assert torch.count_nonzero(big.weights[0][4:]) == 0
    assert torch.count_nonzero(big.weights[1][:, 4:9]) == 0
    assert torch.equal(big.weights[1][:5, :4], net.weights[1][:, :4])
    assert torch.equal(big.weights[1][:5, -1], net.weights[1][:, -1])
    # new incoming synapses get no gradient (their outgoing synapses are 0), new outgoing do
    grads = torch.func.grad(task.loss)(list(big.weights))
    assert torch.count_nonzero(grads[0][4:]) == 0
    assert torch.count_nonzero(grads[1][:, 4:9]) > 0


def test_sigmoid_network_uses_bias_input_minus_one_and_init_scale():
    net = init_sigmoid_mlp([200, 300], rng=15)
    W = net.weights[0]
    assert W.shape == (300, 201)
    assert W.std().item() == pytest.approx(4 / math.sqrt(201), rel=0.02)
    x = torch.zeros(1, 200, dtype=D)
    assert torch.allclose(net(x)[0], torch.sigmoid(-W[:, -1]))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="rows >= cols"):
        semi_orthogonal(2, 3, rng=0)
    with pytest.raises(TypeError, match="rng"):
        semi_orthogonal(3, 2, rng="seed")
    with pytest.raises(ValueError, match="c1"):
        expand_linear(torch.zeros(2, 2, dtype=D), 0, 1, rng=0)
    with pytest.raises(ValueError, match="shrink"):
        expand_sigmoid(init_sigmoid_mlp([2, 4, 1], rng=0), [3])
    with pytest.raises(ValueError, match="hidden layers"):
        expand_sigmoid(init_sigmoid_mlp([2, 4, 1], rng=0), [5, 6])
    with pytest.raises(ValueError, match="chain"):
        SigmoidMLP((torch.zeros(3, 3), torch.zeros(2, 3)))
    task = make_linear_task(3, 2, rng=0)
    with pytest.raises(ValueError, match="shape"):
        task.loss(torch.zeros(3, 3, dtype=D))


@settings(max_examples=25, deadline=None)
@given(
    n_in=st.integers(1, 5),
    n_out=st.integers(1, 4),
    c1=st.integers(1, 3),
    c2=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_expansion_invariants_hold_for_any_shape(n_in, n_out, c1, c2, seed):
    task = make_linear_task(n_in, n_out, n_samples=20, rng=seed)
    W = torch.randn(n_out, n_in, generator=torch.Generator().manual_seed(seed + 1), dtype=D)
    ex = expand_linear(W, c1, c2, rng=seed + 2, task=task)
    assert ex.n_synapses == c1 * c2 * n_in * n_out
    assert ex.task.loss(ex.weights).item() == pytest.approx(
        task.loss(W).item(), rel=1e-9, abs=1e-12
    )
    assert ex.task.grad(ex.weights).norm().item() == pytest.approx(
        task.grad(W).norm().item(), rel=1e-9, abs=1e-12
    )
    assert ex.task.hessian_trace() == pytest.approx(c2 * task.hessian_trace(), rel=1e-9)


def test_semi_orthogonal_is_haar_distributed():
    # Haar: every entry has mean 0 (sd 1/sqrt(rows)); QR without the sign fix makes Q[0, 0] <= 0
    # always (mean about -0.33 for 6 rows). 400 draws: SE of the mean 0.41/20 = 0.02; allow 5 SE.
    g = torch.Generator().manual_seed(3)
    first = torch.stack([semi_orthogonal(6, 2, rng=g)[0] for _ in range(400)])
    assert first.mean(dim=0).abs().max() < 0.1


def test_expansion_records_its_factors():
    task = make_linear_task(4, 3, rng=0)
    ex = expand_linear(torch.zeros(3, 4, dtype=D), 2, 5, rng=1, task=task)
    assert (ex.c1, ex.c2) == (2, 5)
    assert ex.to_dict() == {"c1": 2, "c2": 5, "n_outputs": 3, "n_inputs": 4, "n_synapses": 120}
    assert ex.weights.shape == (15, 8) and ex.B.shape == (8, 4) and ex.D.shape == (15, 3)


def test_sigmoid_task_loss_is_the_average_over_inputs():
    # P = 13 inputs of dimension 3: F = (1/P) sum_p 1/2 |y*(x_p) - y(x_p)|^2
    teacher = init_sigmoid_mlp([3, 4, 2], rng=0)
    student = init_sigmoid_mlp([3, 4, 2], rng=1)
    task = make_sigmoid_task(teacher, n_samples=13, rng=2)
    per_input = [
        0.5 * float(((teacher(x[None]) - student(x[None])) ** 2).sum()) for x in task.inputs
    ]
    assert float(task.loss(student.weights)) == pytest.approx(sum(per_input) / 13, rel=1e-12)


def test_linear_flat_loss_closed_forms_match_autodiff():
    # the closed forms of LinearTask.flat_loss against the generic reverse-mode FlatLoss of the
    # same loss: exact derivatives both, so they agree to rounding (1e-12 relative)
    from syngeo.bounds import FlatLoss

    task = make_linear_task(5, 3, rng=4)
    closed = task.flat_loss()
    generic = FlatLoss(task.loss, torch.zeros(3, 5, dtype=D))
    g = torch.Generator().manual_seed(5)
    w = torch.randn(15, generator=g, dtype=D)
    V = torch.randn(4, 15, generator=g, dtype=D)
    F_c, g_c = closed.value_and_grad(w)
    F_g, g_g = generic.value_and_grad(w)
    assert F_c == pytest.approx(F_g, rel=1e-12)
    assert torch.allclose(g_c, g_g, rtol=1e-12, atol=1e-14)
    assert torch.allclose(closed.hvp_rows(w, V), generic.hvp_rows(w, V), rtol=1e-12, atol=1e-14)
    assert closed.hessian_trace(w) == pytest.approx(generic.hessian_trace(w), rel=1e-12)
    assert closed.geometry(w, exact_max=1).trace_method == "exact"  # closed form at any N
