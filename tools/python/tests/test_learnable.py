"""The synthetic concepts are learnable, not decorative: a small CNN trained briefly on synthetic
dictionary images predicts gender and attributes well above chance on held-out images.

As a test (``pytest -m learnable``, under a minute on 2 idle cores): 1,400 training and 400 test
images at 64 px, 5 epochs. As a script, for the full table at any scale:

    python3 tests/test_learnable.py --train 2400 --test 600 --size 112 --epochs 12

Accuracy is balanced accuracy (mean of the true-positive and true-negative rates), so chance is
0.5 whatever a concept's frequency.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

try:
    import torch
    from torch import nn
except ImportError:  # the test skips; the script says so
    torch = None

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hndd_client.dictionary_io import read_dictionary  # noqa: E402
from hndd_client.synth import generate_dictionary  # noqa: E402
from hndd_client.taxonomy import PART  # noqa: E402


def load_split(path):
    """Pixels as float tensors and targets [N, 1 + K]: male?, then each attribute / action unit."""
    dictionary = read_dictionary(path)
    header = dictionary.header
    gender = dictionary.global_label[:, header.categories.index("gender")]
    male = header.subgroups.index("male")
    concepts = [i for i, kind in enumerate(header.concept_type) if kind != PART]
    targets = np.concatenate([(gender == male)[:, None], dictionary.local_label[:, concepts] == 1], axis=1)
    known = np.concatenate([(gender >= 0)[:, None], dictionary.local_label[:, concepts] >= 0], axis=1)
    pixels = torch.from_numpy(dictionary.pixels).permute(0, 3, 1, 2).float().div(255.0)
    names = ["gender (male)"] + [header.concepts[i] for i in concepts]
    return pixels, torch.from_numpy(targets.astype(np.float32)), torch.from_numpy(known.astype(np.float32)), names


def small_cnn(outputs):
    def block(inputs, width):
        return nn.Sequential(nn.Conv2d(inputs, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                             nn.MaxPool2d(2))

    return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         block(16, 32), block(32, 64), block(64, 64), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(64 * 16, 128), nn.ReLU(), nn.Linear(128, outputs))


def balanced_accuracy(predicted, truth, known):
    keep = known > 0
    predicted, truth = predicted[keep], truth[keep]
    positives, negatives = truth == 1, truth == 0
    if positives.sum() == 0 or negatives.sum() == 0:
        return float("nan")
    return 0.5 * float((predicted[positives] == 1).float().mean() + (predicted[negatives] == 0).float().mean())


def measure_learnability(train_images, test_images, size, epochs, workers=2, seed=0, log=None):
    """Trains the small CNN on one synthetic dictionary, evaluates on another; {name: balanced accuracy}."""
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    with tempfile.TemporaryDirectory() as folder:
        started = time.monotonic()
        generate_dictionary(Path(folder) / "train.h5", train_images, size, seed=1000 + seed, workers=workers)
        generate_dictionary(Path(folder) / "test.h5", test_images, size, seed=2000 + seed, workers=workers)
        x_train, y_train, k_train, names = load_split(Path(folder) / "train.h5")
        x_test, y_test, k_test, _ = load_split(Path(folder) / "test.h5")
    if log:
        print(f"generated {train_images}+{test_images} images at {size} px in {time.monotonic() - started:.0f} s",
              file=log)

    network = small_cnn(y_train.shape[1])
    frequency = ((y_train * k_train).sum(0) / k_train.sum(0).clamp(min=1)).clamp(0.05, 0.95)
    loss_function = nn.BCEWithLogitsLoss(pos_weight=(1 - frequency) / frequency, reduction="none")
    batch = 64
    steps = epochs * ((train_images + batch - 1) // batch)
    optimiser = torch.optim.AdamW(network.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    started = time.monotonic()
    for _ in range(epochs):
        network.train()
        order = torch.randperm(train_images)
        for first in range(0, train_images, batch):
            rows = order[first:first + batch]
            loss = (loss_function(network(x_train[rows]), y_train[rows]) * k_train[rows]).sum() / k_train[rows].sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    network.eval()
    with torch.no_grad():
        predicted = (network(x_test) > 0).float()
    if log:
        print(f"trained {epochs} epochs in {time.monotonic() - started:.0f} s", file=log)
    return {name: balanced_accuracy(predicted[:, j], y_test[:, j], k_test[:, j]) for j, name in enumerate(names)}


def format_table(accuracies):
    return "\n".join(f"  {name:22s} {value:.3f}" for name, value in accuracies.items())


@pytest.mark.learnable
def test_gender_and_five_attributes_are_learned_well_above_chance():
    if torch is None:
        pytest.skip("torch is not installed (pip install torch)")
    accuracies = measure_learnability(train_images=1400, test_images=400, size=64, epochs=5, log=sys.stdout)
    print("balanced accuracy on held-out synthetic faces:\n" + format_table(accuracies))
    assert accuracies["gender (male)"] >= 0.75
    learned = [name for name, value in accuracies.items() if name != "gender (male)" and value >= 0.75]
    assert len(learned) >= 5, f"only {learned} reach 0.75"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=2400)
    parser.add_argument("--test", type=int, default=600)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args(argv)
    if torch is None:
        print("torch is not installed (pip install torch)", file=sys.stderr)
        return 1
    accuracies = measure_learnability(options.train, options.test, options.size, options.epochs, options.workers,
                                      log=sys.stderr)
    print(format_table(accuracies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
