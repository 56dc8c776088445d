"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, 1998), as the case study draws it.

A 32x32 grey image goes through conv - pool - conv - pool - fc - fc - output::

    layer                     output       params
    input                     1 x 32 x 32
    features.0  conv 6@5x5    6 x 28 x 28     156   (6*1*5*5 + 6)
    features.2  pool 2x2/2    6 x 14 x 14
    features.3  conv 16@5x5  16 x 10 x 10   2,416   (16*6*5*5 + 16)
    features.5  pool 2x2/2   16 x  5 x  5
    classifier.0  fc 400->120       120    48,120
    classifier.2  fc 120->84         84    10,164
    classifier.4  fc 84->10          10       850
                                    total  61,706   ("60k parameters")

What it teaches: going deeper, height and width shrink (32, 28, 14, 10, 5)
while the number of channels grows (1, 6, 16); and the pattern
conv-pool-conv-pool-fc-fc-output is still the skeleton of many networks.

Like the case study, this is the simplified LeNet-5: plain average pooling
(the paper's subsampling layers had a trainable weight and bias), every C3
map sees all six S2 maps (the paper connected only some), and the output is a
linear layer whose logits go to softmax / cross-entropy (the paper used RBF
units). The paper used tanh-like squashing; ``activation="relu"`` and
``pool="max"`` give the modern variant the case study mentions.
"""
from .. import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class LeNet5(nn.Module):
    """LeNet-5 for (N, 1, 32, 32) images; returns (N, num_classes) logits."""

    def __init__(self, num_classes=10, activation="tanh", pool="avg"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"lenet5: activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {activation!r}")
        if pool not in POOLS:
            raise ValueError(f"lenet5: pool must be one of {sorted(POOLS)}, got {pool!r}")
        act, pooling = ACTIVATIONS[activation], POOLS[pool]
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5),        # (N, 1, 32, 32) -> (N, 6, 28, 28)
            act(),
            pooling(kernel_size=2, stride=2),      # -> (N, 6, 14, 14)
            nn.Conv2d(6, 16, kernel_size=5),       # -> (N, 16, 10, 10)
            act(),
            pooling(kernel_size=2, stride=2),      # -> (N, 16, 5, 5)
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120),            # (N, 400) -> (N, 120)
            act(),
            nn.Linear(120, 84),                    # -> (N, 84)
            act(),
            nn.Linear(84, num_classes),            # -> (N, num_classes)
        )

    def forward(self, x):
        x = self.features(x)                       # (N, 16, 5, 5)
        x = x.flatten(1)                           # (N, 400)
        return self.classifier(x)                  # (N, num_classes)


def lenet5(num_classes=10, activation="tanh", pool="avg"):
    """LeNet-5: 32x32x1 input, 61,706 parameters with 10 classes."""
    return LeNet5(num_classes=num_classes, activation=activation, pool=pool)
