"""Bring your own network: a small torch nn.Sequential on a faulty memristor chip, two plans.

Trains a small convolutional network on the embedded MNIST-5k training split for two
epochs, converts it to the integer network the crossbars run (``remeco.from_torch``),
and evaluates it on chip instances of the ReMeCo paper's chip with twice its stuck-at
rate, without redundancy (``base``) and with the MSB plan (the most sensitive 80 % of
each layer's neurons get two copies of their most significant weight slice). Prints
one row per plan: mean accuracy over the chip instances, area and energy.

Run: ``python examples/bring_your_own_network.py`` (about half a minute on two cores).
"""

import torch
import torch.nn.functional as F
from torch import nn

import remeco


def train(model: nn.Module, images, labels, epochs: int = 2) -> nn.Module:
    """A few epochs of Adam on pixels / 255 (the input convention of remeco.from_torch)."""
    x = torch.tensor(images, dtype=torch.float32) / 255
    y = torch.tensor(labels)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            batch = order[start:start + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    return model.eval()


def main() -> None:
    train_set, test_set = remeco.load_dataset("mnist5k")  # uint8 (N, 1, 28, 28), 4,000 / 1,000
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 5), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),   # BatchNorm: folded
        nn.Conv2d(8, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.2),                                          # Dropout: dropped
        nn.Linear(256, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )
    train(model, train_set.images, train_set.labels)

    network = remeco.from_torch(model, train_set.images[:1000])
    chip = remeco.ChipParams.load("paper").with_(stuck_at_rate=0.02)
    results = remeco.evaluate(
        network, test_set.images[:500], test_set.labels[:500],
        plans=("base", "msb"), instances=4, chip=chip, seed=0,
        sensitivity=(train_set.images[:1000], train_set.labels[:1000]),  # for the MSB plan
    )
    print(f"chip: {chip.describe()}")
    print(f"integer network without faults: {results.reference_accuracy.iloc[0]:.1%}")
    summary = results.groupby("plan", sort=False).agg(
        accuracy=("accuracy", "mean"), worst=("accuracy", "min"),
        area_mm2=("area_mm2", "first"), energy_mj_per_10k=("energy_j_per_10k_images", "first"))
    summary["energy_mj_per_10k"] *= 1e3
    print(summary.to_string(float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
