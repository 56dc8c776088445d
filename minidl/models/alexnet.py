"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012): LeNet, but much bigger.

``variant="original"`` is the network of the paper, for 227x227x3 images::

    layer                                   output         params
    features.0   conv 96@11x11/4            96 x 55 x 55       34,944
    features.1   ReLU
    features.2   LRN(5, 1e-4, 0.75, 2)
    features.3   max-pool 3x3/2 (overlapping)  96 x 27 x 27
    features.4   conv 256@5x5 p2           256 x 27 x 27      614,656
    features.5   ReLU, features.6 LRN
    features.7   max-pool 3x3/2            256 x 13 x 13
    features.8   conv 384@3x3 p1           384 x 13 x 13      885,120
    features.10  conv 384@3x3 p1           384 x 13 x 13    1,327,488
    features.12  conv 256@3x3 p1           256 x 13 x 13      884,992
    features.14  max-pool 3x3/2            256 x  6 x  6
    classifier.0 fc 9216->4096, ReLU, dropout 0.5         37,752,832
    classifier.3 fc 4096->4096, ReLU, dropout 0.5         16,781,312
    classifier.6 fc 4096->1000                             4,097,000
                                                   total 62,378,344

What it teaches (the case study): the same conv-pool-fc pattern as LeNet-5,
~1000 times the parameters; ReLU instead of tanh; Local Response
Normalization (after the ReLU, before the pool, of conv1 and conv2: each
activation is divided by the energy of its 5 neighbouring channels); max
pools that overlap (3x3 windows, stride 2); dropout in the first two fully
connected layers; and the split over two GPUs. ``groups=2`` reproduces that
split: conv2, conv4 and conv5 see only the half of the channels that lives on
their own GPU (conv3 and the fc layers talk across), which leaves 60,965,224
parameters. (The paper's text says 224x224; the arithmetic needs 227.)

``variant="torchvision"`` is torchvision's ``alexnet`` (64-192-384-256-256
filters, no LRN, adaptive average pool to 6x6, dropout before fc6 and fc7):
61,100,840 parameters, names and shapes equal to torchvision's, so its
converted state_dict loads with ``load_state_dict(strict=True)``.
"""
from .. import nn

VARIANTS = ("original", "torchvision")
CHANNELS = {"original": (96, 256, 384, 384, 256), "torchvision": (64, 192, 384, 256, 256)}


class AlexNet(nn.Module):
    """AlexNet; ``forward`` maps (N, 3, H, W) images to (N, num_classes) logits.

    ``channels`` (5 conv widths) and ``hidden`` (fc width) exist to build a
    small AlexNet with the same code, e.g. for gradient checks.
    """

    def __init__(self, num_classes=1000, variant="original", groups=1,
                 channels=None, hidden=4096, dropout=0.5):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"alexnet: variant must be one of {VARIANTS}, got {variant!r}")
        if groups not in (1, 2):
            raise ValueError(f"alexnet: groups must be 1 or 2 (the two-GPU split), got {groups!r}")
        if groups == 2 and variant != "original":
            raise ValueError("alexnet: groups=2 (the paper's two-GPU split) exists only for "
                             "variant='original'")
        c1, c2, c3, c4, c5 = CHANNELS[variant] if channels is None else channels
        self.variant = variant
        if variant == "original":
            self.features = nn.Sequential(
                nn.Conv2d(3, c1, kernel_size=11, stride=4),           # 227 -> (N, 96, 55, 55)
                nn.ReLU(),
                nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
                nn.MaxPool2d(kernel_size=3, stride=2),                # -> (N, 96, 27, 27)
                nn.Conv2d(c1, c2, kernel_size=5, padding=2, groups=groups),  # -> (N, 256, 27, 27)
                nn.ReLU(),
                nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
                nn.MaxPool2d(kernel_size=3, stride=2),                # -> (N, 256, 13, 13)
                nn.Conv2d(c2, c3, kernel_size=3, padding=1),          # -> (N, 384, 13, 13)
                nn.ReLU(),
                nn.Conv2d(c3, c4, kernel_size=3, padding=1, groups=groups),  # -> (N, 384, 13, 13)
                nn.ReLU(),
                nn.Conv2d(c4, c5, kernel_size=3, padding=1, groups=groups),  # -> (N, 256, 13, 13)
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2),                # -> (N, 256, 6, 6)
            )
            self.classifier = nn.Sequential(                          # dropout on fc6, fc7 outputs
                nn.Linear(c5 * 6 * 6, hidden),                        # (N, 9216) -> (N, 4096)
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, hidden),                            # -> (N, 4096)
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),                       # -> (N, num_classes)
            )
        else:
            self.features = nn.Sequential(
                nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=2),  # 224 -> (N, 64, 55, 55)
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2),                # -> (N, 64, 27, 27)
                nn.Conv2d(c1, c2, kernel_size=5, padding=2),          # -> (N, 192, 27, 27)
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2),                # -> (N, 192, 13, 13)
                nn.Conv2d(c2, c3, kernel_size=3, padding=1),          # -> (N, 384, 13, 13)
                nn.ReLU(),
                nn.Conv2d(c3, c4, kernel_size=3, padding=1),          # -> (N, 256, 13, 13)
                nn.ReLU(),
                nn.Conv2d(c4, c5, kernel_size=3, padding=1),          # -> (N, 256, 13, 13)
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2),                # -> (N, 256, 6, 6)
            )
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))               # any input size -> 6 x 6
            self.classifier = nn.Sequential(                          # dropout on fc6, fc7 inputs
                nn.Dropout(dropout),
                nn.Linear(c5 * 6 * 6, hidden),                        # (N, 9216) -> (N, 4096)
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, hidden),                            # -> (N, 4096)
                nn.ReLU(),
                nn.Linear(hidden, num_classes),                       # -> (N, num_classes)
            )

    def forward(self, x):
        x = self.features(x)                      # (N, 256, 6, 6)
        if self.variant == "torchvision":
            x = self.avgpool(x)                   # (N, 256, 6, 6) whatever the input size
        x = x.flatten(1)                          # (N, 9216)
        return self.classifier(x)                 # (N, num_classes)


def alexnet(num_classes=1000, variant="original", groups=1):
    """AlexNet: ``variant="original"`` (227x227x3, 62,378,344 parameters;
    60,965,224 with ``groups=2``) or ``"torchvision"`` (61,100,840)."""
    return AlexNet(num_classes=num_classes, variant=variant, groups=groups)
