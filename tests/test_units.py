"""Tests of syngeo.units, and of which flows depend on the units of the parameters.

Surace & Brea's point, checked numerically: the Euclidean flow with a unit conversion factor
(eta_q = 1 unit^2) is a different vector field for every unit of q, while the Fisher
(natural-gradient) flow is one vector field in every unit system.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syngeo.errors import InputError, InputTypeError
from syngeo.metrics import Constant, Euclidean, Fisher, coordinate_grid, flow_field
from syngeo.release import BinomialRelease
from syngeo.units import (
    DIMENSIONLESS,
    MICROVOLT,
    MILLIVOLT,
    VOLT,
    Quantity,
    Unit,
    UnitChange,
    unit,
)

MODEL_MV = BinomialRelease(target_mean=0.5, n_sites=1, unit="mV")
GRID_MV = coordinate_grid(np.linspace(0.03, 0.97, 15), np.linspace(0.1, 2.0, 12))


# -- units and quantities -------------------------------------------------------------------------


def test_conversion_factors():
    assert MILLIVOLT.factor_to(VOLT) == 1e-3
    assert MILLIVOLT.factor_to(MICROVOLT) == 1e3  # exact, not 1000.0000000000001
    assert VOLT.factor_to("µV") == 1e6
    assert Quantity(0.5, "mV").to("µV").value == 500.0
    assert Quantity([1.0, 2.0], "V").magnitude_in("mV").tolist() == [1000.0, 2000.0]
    assert Quantity(2.0, "mV").to_dict() == {"value": 2.0, "unit": "mV"}


def test_unit_parsing_is_case_sensitive_for_symbols():
    assert unit("mV") is MILLIVOLT and unit("uV") is MICROVOLT and unit("μV") is MICROVOLT
    assert unit("Millivolt") is MILLIVOLT and unit("1") is DIMENSIONLESS
    with pytest.raises(InputError, match="unknown unit 'MV'"):
        unit("MV")
    with pytest.raises(InputTypeError, match="string such as 'mV'"):
        unit(3)
    with pytest.raises(InputError, match="same dimension"):
        MILLIVOLT.factor_to(DIMENSIONLESS)
    with pytest.raises(InputError, match="SI factor of unit 'bad'"):
        Unit("bad", "voltage", 0.0)
    with pytest.raises(InputError, match="SI factor"):
        Unit("bad", "voltage", float("inf"))
    with pytest.raises(InputTypeError, match="SI factor"):
        Unit("bad", "voltage", "1e-3")
    with pytest.raises(InputTypeError, match="symbol"):
        Unit("", "voltage", 1.0)


def test_unit_change_round_trip_and_errors():
    change = UnitChange(("1", "mV"), ("1", "V"))
    x = np.array([[0.3, 1.5], [0.7, 0.2]])
    np.testing.assert_allclose(change.backward(change.forward(x)), x, rtol=1e-15)
    np.testing.assert_allclose(change.inverse.pushforward(change.pushforward(x)), x, rtol=1e-15)
    assert repr(change) == "UnitChange((1, mV) -> (1, V))"
    assert change.to_dict()["scale"] == [1.0, 0.001]
    with pytest.raises(InputError, match=r"shape \[\.\.\., 2\]"):
        change.forward([1.0, 2.0, 3.0])
    with pytest.raises(InputError, match=r"shape \[\.\.\., 2, 2\]"):
        change.transform_metric(np.eye(3))
    with pytest.raises(InputError, match="one unit per coordinate"):
        UnitChange(("1",), ("1", "V"))


@settings(max_examples=30, deadline=None)
@given(
    s=st.floats(min_value=1e-7, max_value=1e7),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_inner_products_are_invariant_when_metric_and_vectors_both_transform(s, seed):
    rng = np.random.default_rng(seed)
    change = UnitChange(("1", "mV"), ("1", Unit("x", "voltage", 1e-3 * s)))
    a = np.array([[2.0, 0.4], [0.4, 1.0]])
    u, v = rng.standard_normal((2, 2))
    before = u @ a @ v
    after = change.pushforward(u) @ change.transform_metric(a) @ change.pushforward(v)
    assert after == pytest.approx(before, rel=1e-12)


# -- how the release model's objects transform ----------------------------------------------------


@pytest.mark.parametrize("target", ["V", "µV"])
def test_cost_gradient_is_a_covector_and_fisher_a_tensor(target):
    change = MODEL_MV.unit_change(target)
    model = MODEL_MV.in_unit(target)
    theta_new = change.forward(GRID_MV)
    np.testing.assert_allclose(
        model.cost_grad(theta_new),
        change.pullback_covector(MODEL_MV.cost_grad(GRID_MV)),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        model.fisher_information(theta_new),
        change.transform_metric(MODEL_MV.fisher_information(GRID_MV)),
        rtol=1e-12,
    )
    # The cost itself only shifts by log of the scale factor (from log sigma).
    shift = model.cost(theta_new) - MODEL_MV.cost(GRID_MV)
    np.testing.assert_allclose(shift, np.log(change.scale[1]), rtol=1e-10)


def _flow_in_unit(target, metric_for):
    """The flow of MODEL_MV computed with q in ``target``, mapped back to (P, q[mV])."""
    change = MODEL_MV.unit_change(target)
    model = MODEL_MV.in_unit(target)
    field = flow_field(model.cost_grad, metric_for(model), change.forward(GRID_MV))
    return field.pushforward(change.inverse)


@pytest.mark.parametrize("target", ["V", "µV", "mV"])
def test_fisher_flow_is_the_same_vector_field_in_every_unit_system(target):
    reference = flow_field(MODEL_MV.cost_grad, Fisher(MODEL_MV), GRID_MV)
    mapped = _flow_in_unit(target, Fisher)
    np.testing.assert_allclose(mapped.base_points, GRID_MV, rtol=1e-14)
    scale = np.max(np.abs(reference.vectors))
    assert np.max(np.abs(mapped.vectors - reference.vectors)) <= 1e-10 * scale
    np.testing.assert_allclose(mapped.speeds, reference.speeds, rtol=1e-10)


@pytest.mark.parametrize(("target", "eta_q_in_mv2"), [("V", 1e6), ("µV", 1e-6)])
def test_euclidean_flow_depends_on_the_unit_of_q(target, eta_q_in_mv2):
    reference = flow_field(MODEL_MV.cost_grad, Euclidean(2), GRID_MV)  # eta_q = 1 mV^2
    mapped = _flow_in_unit(target, lambda model: Euclidean(2))  # eta_q = 1 target^2
    # Different vector fields: the q-component is rescaled by the squared conversion factor.
    ratio = mapped.vectors[..., 1] / reference.vectors[..., 1]
    np.testing.assert_allclose(ratio, eta_q_in_mv2, rtol=1e-10)
    np.testing.assert_allclose(mapped.vectors[..., 0], reference.vectors[..., 0], rtol=1e-12)
    cos = np.sum(mapped.unit_vectors * reference.unit_vectors, axis=-1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() > 45  # directions change, visibly
    # "Euclidean with eta_q = 1 V^2" is, in mV coordinates, the constant cometric diag(1, 1e6 mV^2).
    explicit = flow_field(
        MODEL_MV.cost_grad, Constant.from_conversion_factors([1.0, eta_q_in_mv2]), GRID_MV
    )
    np.testing.assert_allclose(mapped.vectors, explicit.vectors, rtol=1e-10, atol=0)


def test_docstring_examples_run():
    import doctest

    import syngeo.units

    result = doctest.testmod(syngeo.units, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
