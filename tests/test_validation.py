"""The shared input checks (syngeo.validation), the error classes and the thread policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import syngeo
from syngeo import validation as v
from syngeo.errors import InputError, InputTypeError
from syngeo.threads import limit_threads


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.uint8(2)])
def test_positive_int_accepts_integers(value):
    out = v.as_positive_int(value, "n")
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [True, 3.0, "3", None, np.float64(2.0)])
def test_integer_checks_reject_non_integers_with_a_type_error(value):
    with pytest.raises(InputTypeError, match="n must be an integer"):
        v.as_positive_int(value, "n")


@pytest.mark.parametrize(("check", "bad"), [(v.as_positive_int, 0), (v.as_nonnegative_int, -1)])
def test_integer_bounds_are_inclusive(check, bad):
    check(bad + 1, "n")
    with pytest.raises(InputError, match=f"got {bad}"):
        check(bad, "n")


def test_float_checks():
    assert v.as_positive_float(2, "x") == 2.0
    assert v.as_positive_float(0, "x", allow_zero=True) == 0.0
    for bad in (0.0, -1e-300, float("nan"), float("inf")):
        with pytest.raises(InputError):
            v.as_positive_float(bad, "x")
    with pytest.raises(InputTypeError):
        v.as_finite_float(True, "x")


def test_probability_interval_ends():
    assert v.as_probability(0.5, "q") == 0.5
    for bad in (0.0, 1.0):
        with pytest.raises(InputError, match=r"\(0, 1\)"):
            v.as_probability(bad, "q")
        assert v.as_probability(bad, "q", open_interval=False) == bad


def test_choice_lists_the_options():
    assert v.as_choice("cdf", "estimator", ("cdf", "likelihood")) == "cdf"
    with pytest.raises(InputError, match="'cdf', 'likelihood'"):
        v.as_choice("CDF", "estimator", ("cdf", "likelihood"))


def test_generator_semantics_follow_numpy():
    g = np.random.default_rng(5)
    assert v.as_generator(g) is g  # a Generator continues its own stream
    assert v.as_generator(3).random() == np.random.default_rng(3).random()
    seq = np.random.SeedSequence(11)
    assert (
        v.as_generator(seq).random() == np.random.default_rng(np.random.SeedSequence(11)).random()
    )
    # None is fresh entropy: two draws of 64 bits agree with probability 2^-64
    assert v.as_generator(None).integers(2**63) != v.as_generator(None).integers(2**63)
    for bad in (-1, 1.5, "0", True):
        with pytest.raises(InputError):
            v.as_generator(bad)


def test_error_hierarchy():
    assert issubclass(syngeo.InputError, ValueError)
    assert issubclass(syngeo.InputTypeError, TypeError)
    assert issubclass(syngeo.DomainError, syngeo.InputError)
    assert issubclass(syngeo.DataFileError, syngeo.InputError)
    assert not issubclass(syngeo.ConvergenceError, ValueError)
    err = syngeo.ConvergenceError("stalled", residual=0.5, n_iter=3)
    assert (err.residual, err.n_iter, str(err)) == (0.5, 3, "stalled")


def test_limit_threads_restores_the_setting_even_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), limit_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with pytest.raises(InputError):
        with limit_threads(0):
            pass


def test_limit_threads_limits_blas_too():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with limit_threads(1):
        infos = threadpoolctl.threadpool_info()
        assert all(info["num_threads"] == 1 for info in infos)
