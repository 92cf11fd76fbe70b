"""remeco.models.convert: torch modules -> the integer network (folding, PTQ, one-line refusals)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from remeco.models.convert import ConversionError, ConvertedNetwork, from_torch
from remeco.models.data import load_dataset
from remeco.models.quantized import QuantizedNetwork


def _images(n=64, shape=(1, 28, 28), seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _float(module, images):
    with torch.no_grad():
        return module.eval()(torch.tensor(images, dtype=torch.float32) / 255)


def _randomize_bn(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g))
    return module


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist5k")


def test_trained_sequential_integer_accuracy_close_to_float(mnist):
    train, test = mnist
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 5), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.2),
                        nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 10))
    x, y = torch.tensor(train.images, dtype=torch.float32) / 255, torch.tensor(train.labels)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    float_acc = float((_float(net, test.images).argmax(1).numpy() == test.labels).mean())
    q = from_torch(net, train.images[:1000])
    assert isinstance(q, QuantizedNetwork) and isinstance(q, ConvertedNetwork)
    int_acc = q.accuracy(test)
    assert float_acc > 0.9
    print(f"float {float_acc:.4f} integer {int_acc:.4f}")
    assert abs(int_acc - float_acc) <= 0.01, (float_acc, int_acc)
    # The integer network is plain data: saved and loaded without the float model.
    assert [layer.kind for layer in q.layers] == ["conv", "conv", "dense", "dense"]


def test_batchnorm_folding_equals_unfolded_float_output():
    net = _randomize_bn(nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 14 * 14, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10)))
    images = _images()
    q = from_torch(net, images)
    with torch.no_grad():
        folded = q.float_model(torch.tensor(images))
    torch.testing.assert_close(folded, _float(net, images), rtol=1e-4, atol=1e-4)
    assert len(q.layers) == 3


@pytest.mark.parametrize("tail", ["linear", "conv"])
def test_average_pool_folds_into_the_next_layer_exactly(tail):
    torch.manual_seed(1)
    if tail == "linear":
        net = nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 12 * 12, 10))
    else:
        net = nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                            nn.Flatten(), nn.Linear(6 * 12 * 12, 10))
    images = _images()
    q = from_torch(net, images)
    with torch.no_grad():
        folded = q.float_model(torch.tensor(images))
    torch.testing.assert_close(folded, _float(net, images), rtol=1e-4, atol=1e-4)
    # The integer network computes the same classes as its float model on most images.
    agree = (q.predict(images) == folded.argmax(1).numpy()).mean()
    assert agree >= 0.9


class _Traced(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(4 * 13 * 13, 20)
        self.fc2 = nn.Linear(20, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.bn(self.conv(x))))
        x = x.view(x.size(0), -1)
        x = F.dropout(x, 0.3, self.training)
        return self.fc2(torch.relu(self.fc1(x)))


def test_fx_traced_module_converts():
    net = _randomize_bn(_Traced())
    images = _images()
    q = from_torch(net, images)
    with torch.no_grad():
        folded = q.float_model(torch.tensor(images))
    torch.testing.assert_close(folded, _float(net, images), rtol=1e-4, atol=1e-4)
    assert [layer.kind for layer in q.layers] == ["conv", "dense", "dense"]


class _Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


def test_user_blocks_inside_a_sequential_are_traced():
    net = _randomize_bn(nn.Sequential(_Block(1, 4), nn.MaxPool2d(2), _Block(4, 8), nn.Flatten(),
                                      nn.Linear(8 * 14 * 14, 10)))
    images = _images()
    q = from_torch(net, images)
    with torch.no_grad():
        folded = q.float_model(torch.tensor(images))
    torch.testing.assert_close(folded, _float(net, images), rtol=1e-4, atol=1e-4)
    assert [layer.pool for layer in q.layers] == [2, 1, 1]


class _PytorchMnistExample(nn.Module):
    """The shape of PyTorch's MNIST example (examples/mnist/main.py), smaller."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, 1), nn.Conv2d(4, 8, 3, 1)
        self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(8 * 12 * 12, 16), nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def test_the_pytorch_mnist_example_shape_converts():
    net = _PytorchMnistExample().eval()
    images = _images()
    q = from_torch(net, images)
    assert [(layer.kind, layer.pool) for layer in q.layers] == [("conv", 1), ("conv", 2), ("dense", 1), ("dense", 1)]
    with torch.no_grad():
        folded = q.float_model(torch.tensor(images))
    # The folded model drops the log-softmax: same classes, logits up to a per-image shift.
    torch.testing.assert_close(F.log_softmax(folded, dim=1), _float(net, images), rtol=1e-4, atol=1e-4)


def test_weight_bits_limit_the_codes():
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    q = from_torch(net, _images(), weight_bits=4)
    assert all(np.abs(layer.weight).max() == 7 for layer in q.layers)


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 3, padding=1)
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.a(x)) + x, 1))


@pytest.mark.parametrize("module, words", [
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Sigmoid()), ["Sigmoid '2'", "Conv2d, Linear"]),
    (nn.Sequential(nn.Conv2d(1, 4, 3, groups=1, dilation=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 24 * 24, 10)),
     ["Conv2d '0'", "dilation=1"]),
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Linear(32, 10)), ["Linear '2'", "without a ReLU"]),
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.ReLU()), ["Linear '1'", "last layer"]),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(3, stride=2), nn.Flatten(), nn.Linear(4 * 12 * 12, 10)),
     ["MaxPool2d '2'", "non-overlapping"]),
    (nn.Sequential(nn.Conv2d(1, 10, 28), nn.AvgPool2d(1)), ["AvgPool2d '1'", "no average pooling"]),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Linear(26, 10)), ["Linear '2'", "Flatten"]),
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.BatchNorm1d(32), nn.Linear(32, 10)),
     ["BatchNorm1d '3'", "directly follow"]),
    (_Residual(), ["add", "chains"]),
])
def test_unsupported_layers_give_one_line_naming_the_layer(module, words):
    with pytest.raises(ConversionError) as info:
        from_torch(module, _images(8))
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("kwargs, word", [
    ({"input_bits": 4}, "input_bits"), ({"weight_bits": 9}, "weight_bits"),
])
def test_bad_arguments_are_one_line(kwargs, word):
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(ConversionError, match=word):
        from_torch(net, _images(4), **kwargs)
    with pytest.raises(ConversionError, match="uint8"):
        from_torch(net, _images(4).astype(np.float32))


def test_sensitivity_from_the_network_or_the_module_is_the_same():
    from remeco.models.convert import compute_sensitivity

    torch.manual_seed(3)
    net = _randomize_bn(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Flatten(), nn.Linear(4 * 13 * 13, 10)))
    images, labels = _images(32), np.arange(32) % 10
    q = from_torch(net, images)
    a = compute_sensitivity(q, images, labels)
    b = compute_sensitivity(q, images, labels, module=net)
    assert [s.shape for s in a.signed] == [(4,), (10,)]
    for x, y in zip(a.magnitude, b.magnitude):
        np.testing.assert_allclose(x, y, rtol=1e-5)
    assert (a.magnitude[-1] > 0).all() and a.magnitude[0].max() > 0  # a hidden channel may be dead
    plain = type(q).__mro__[1](q.name, q.input_shape, q.num_classes, q.layers)  # a QuantizedNetwork
    with pytest.raises(ConversionError, match="module="):
        compute_sensitivity(plain, images, labels)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("what", ["weight", "bias"])
def test_non_finite_parameters_are_refused_naming_the_layer(what, value):
    # inf weights used to convert without an error into arbitrary int8 codes (inf / inf -> NaN -> cast)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():
        getattr(net[1], what)[3] = value
    with pytest.raises(ConversionError, match=rf"Linear '1': the folded {what} holds NaN or infinite values"):
        from_torch(net, _images(4))


def test_a_module_off_the_cpu_is_one_line():
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10, device="meta"))  # what a GPU-resident module meets too
    with pytest.raises(ConversionError, match="module has parameters on meta; .* pass module.cpu()"):
        from_torch(net, _images(4))


def test_sensitivity_labels_outside_the_outputs_are_one_line():
    from remeco.models.convert import compute_sensitivity

    torch.manual_seed(0)
    q = from_torch(nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10)), _images(8))
    with pytest.raises(ConversionError, match=r"labels must be classes in 0..9 .*, got 5..12"):  # was a torch RuntimeError
        compute_sensitivity(q, _images(8), np.arange(8) + 5)
    with pytest.raises(ConversionError, match="at least one"):
        compute_sensitivity(q, _images(0), np.zeros(0, np.int64))
