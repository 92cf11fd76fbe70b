import numpy as np
import pytest

from remeco.models.redundancy import PLAN_NAMES, RedundancyPlan, copies_to_log2, make_plan, reduce_plan
from remeco.models.sensitivity import Sensitivity

SIZES = [4, 10, 20, 5]


def _sens():
    rng = np.random.default_rng(0)
    # layer-level sensitivity decreasing in the middle layers, like LeNet's dense layers
    scale = [1.0, 0.5, 0.01, 0.3]
    signed = tuple(rng.normal(0, s, n) for s, n in zip(scale, SIZES))
    return Sensitivity(signed, tuple(np.abs(s) for s in signed), 100)


def test_named_plans_have_the_documented_structure():
    sens = _sens()
    plans = {n: make_plan(n, SIZES, sens) for n in PLAN_NAMES}
    assert all(not k.any() for k in plans["base"].copies_log2) and plans["base"].committee_log2 == 0
    assert plans["committee"].committee_log2 == 1
    assert all((k == 1).all() for k in plans["layer_averaging"].copies_log2)
    for i, n in enumerate(SIZES):
        sn, msb = plans["sensitive_neuron"].copies_log2[i], plans["msb"].copies_log2[i]
        copied = sn[:, 0] == 1
        assert copied.sum() == int(np.ceil(0.8 * n))
        # the copied neurons are the most sensitive ones
        score = np.abs(sens.signed[i])
        assert score[copied].min() >= score[~copied].max() if (~copied).any() else True
        np.testing.assert_array_equal(msb[:, 1], sn[:, 1])
        assert not msb[:, 0].any()
    sl = plans["sensitive_layer"].copies_log2
    assert not sl[2].any()  # the insensitive layer (1 % of the top) lost its copies
    assert sl[3].any()  # the last layer always keeps them
    assert plans["layer_averaging"].extra_columns_fraction == pytest.approx(1.0)
    assert plans["committee"].extra_columns_fraction == pytest.approx(1.0)
    assert 0 < plans["msb"].extra_columns_fraction < plans["sensitive_neuron"].extra_columns_fraction < 1


def test_plan_round_trip():
    plan = make_plan("msb", SIZES, _sens(), copies=4)
    again = RedundancyPlan.from_dict(plan.to_dict())
    assert again.name == plan.name
    for a, b in zip(again.copies_log2, plan.copies_log2):
        np.testing.assert_array_equal(a, b)
    assert max(int(k.max()) for k in plan.copies_log2) == 2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="triple"), "plan"),
        (dict(name="base", copies=3), "power of two"),
        (dict(name="base", copies=0), "copies"),
        (dict(name="sensitive_neuron", neuron_fraction=0.0), "neuron_fraction"),
        (dict(name="sensitive_neuron", neuron_fraction=1.5), "neuron_fraction"),
        (dict(name="msb", msb_slices=3), "msb_slices"),
        (dict(name="sensitive_layer", drop_layers=[7]), "unknown layer"),
        (dict(name="sensitive_layer", drop_layers=[3]), "last layer"),
        (dict(name="sensitive_layer", layer_threshold=-0.5), "layer_threshold"),
    ],
)
def test_bad_plan_config_gives_clear_errors(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        make_plan(name, SIZES, _sens(), **kwargs)


def test_sensitivity_is_required_and_must_match():
    with pytest.raises(ValueError, match="sensitivity"):
        make_plan("msb", SIZES)
    with pytest.raises(ValueError, match="sensitivity"):
        make_plan("msb", [4, 10], _sens())
    assert copies_to_log2(8) == 3


@pytest.mark.parametrize("name", ["msb", "sensitive_neuron", "sensitive_layer"])
def test_non_finite_sensitivity_is_refused(name):
    # a NaN score used to rank arbitrarily: a plan, silently, with no error
    good = _sens()
    signed = tuple(a.astype(np.float64).copy() for a in good.signed)
    signed[0][1] = np.nan
    with pytest.raises(ValueError, match="sensitivity of layer 0 holds NaN or infinite values"):
        make_plan(name, SIZES, Sensitivity(signed, signed, good.images))


def test_reduce_plan_follows_the_heuristic():
    sens = _sens()
    calls = []

    def evaluate(plan):
        # a stand-in accuracy: losing copies of a layer costs accuracy in proportion to
        # that layer's sensitivity; MSB-only costs a little
        calls.append(plan)
        lost = 0.0
        for k, s in zip(plan.copies_log2, sens.layer()):
            lost += s * 0.02 * (1 - k.mean())
        return 0.97 - lost

    best, trials = reduce_plan(evaluate, SIZES, sens, tolerance=0.004)
    assert trials[0].step == "layer averaging" and trials[0].kept
    floor = trials[0].accuracy - 0.004
    for t in trials:
        assert t.kept == (t.accuracy >= floor) or t is trials[0]
    assert best.extra_columns_fraction < 1.0
    assert evaluate(best) >= floor
    # the insensitive layer 2 is the first whose copies are dropped
    drops = [t for t in trials if t.step.startswith("no copies")]
    assert drops and drops[0].step == "no copies in layer 2" and drops[0].kept
    assert len(calls) == len(trials) + 1
