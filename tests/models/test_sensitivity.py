import numpy as np
import pytest
import torch

from remeco.models import nn as rn
from remeco.models.sensitivity import Sensitivity, neuron_sensitivity, plot_histograms


def _one_layer_net():
    spec = rn.NetSpec("tiny", (1, 2, 2), 3, (rn.LayerSpec("dense", 4, 3),))
    model = rn.QATNet(spec)
    with torch.no_grad():
        model.layers[0].weight.copy_(torch.tensor([[0.5, -0.2, 0.1, 0.0], [-0.3, 0.4, 0.2, 0.1], [0.05, 0.1, -0.4, 0.3]]))
        model.layers[0].bias.zero_()
    return model.eval()


def test_sensitivity_of_a_hand_built_network_matches_a_hand_computation():
    model = _one_layer_net()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 1, 2, 2)).astype(np.uint8)
    labels = rng.integers(0, 3, 7)
    sens = neuron_sensitivity(model, images, labels, batch_size=3)
    # By hand: logits_j = (sum_i x_i * w_code_ji) * s_in * s_w with w_code = w / s_w
    # (straight-through), so dE/dw_ji = (softmax_j - onehot_j) * x_i * s_in, s_in = 1/255.
    with torch.no_grad():
        p = torch.softmax(model(torch.tensor(images, dtype=torch.float32)), dim=1).numpy()
    x = images.reshape(7, 4) / 255.0
    err = p - np.eye(3)[labels]
    per_instance = err[:, :, None] * x[:, None, :]  # (n, neuron, weight)
    neuron_means = per_instance.mean(axis=2)  # mean over the neuron's weights
    np.testing.assert_allclose(sens.signed[0], neuron_means.mean(axis=0), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(sens.magnitude[0], np.abs(neuron_means).mean(axis=0), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(sens.layer("paper"), [np.abs(neuron_means.mean(axis=0)).mean()], rtol=1e-5)
    assert sens.images == 7


def test_lenet_dense_middle_layers_are_least_sensitive(lenet5_small, mnist5k):
    """The paper's finding for LeNet: dense layers 3 and 4 are the least sensitive."""
    model, _ = lenet5_small
    train, _ = mnist5k
    sens = neuron_sensitivity(model, train.images[:300], train.labels[:300])
    for mode in ("paper", "magnitude"):
        order = np.argsort(sens.layer(mode))
        assert set(order[:2]) == {2, 3}, (mode, sens.layer(mode))
    assert [s.size for s in sens.signed] == [6, 16, 120, 84, 10]


def test_round_trip_plot_and_errors(tmp_path):
    model = _one_layer_net()
    images = np.zeros((2, 1, 2, 2), np.uint8)
    sens = neuron_sensitivity(model, images, np.array([0, 1]))
    again = Sensitivity.from_dict(sens.to_dict())
    np.testing.assert_array_equal(again.signed[0], sens.signed[0])
    plot_histograms(sens, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="mode"):
        sens.neuron("median")
    with pytest.raises(ValueError, match="labels"):
        neuron_sensitivity(model, images, np.array([0]))
    with pytest.raises(ValueError, match="images"):
        neuron_sensitivity(model, images[0], np.array([0]))
