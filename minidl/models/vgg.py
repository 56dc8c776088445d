"""VGG-16 and VGG-19 (Simonyan & Zisserman, 2015), torchvision's layout.

What it teaches (the case study): a deep network from only two building
blocks, CONV = 3x3 filter, stride 1, "same" padding, and MAX-POOL = 2x2,
stride 2. Each stage doubles the channels (64, 128, 256, 512, 512) and each
pool halves height and width (224, 112, 56, 28, 14, 7)::

    features    [conv3-64]x2  pool  [conv3-128]x2  pool  [conv3-256]x3  pool
                [conv3-512]x3 pool  [conv3-512]x3  pool       -> 512 x 7 x 7
    avgpool     adaptive average pool to 7x7 (identity at 224x224)
    classifier  fc 25088->4096, ReLU, dropout, fc 4096->4096, ReLU, dropout,
                fc 4096->1000

VGG-16 has 138,357,544 parameters (~138M), VGG-19 (four 3x3 convs in the last
three stages) 143,667,240. Names and shapes equal torchvision's ``vgg16`` and
``vgg19`` (``features.0.weight`` ... ``classifier.6.bias``).
"""
from .. import nn
from ..nn import init

# numbers are 3x3 conv widths, "M" a 2x2/2 max-pool (the paper's configurations D and E)
CFGS = {
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def make_features(cfg, in_channels=3):
    """The conv part: Conv2d(3x3, padding 1) + ReLU per number, MaxPool2d(2, 2) per "M"."""
    layers = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))    # H, W -> H/2, W/2
        else:
            layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))  # C -> v, same H, W
            layers.append(nn.ReLU())
            in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG from a configuration list ``cfg`` (see ``CFGS``).

    ``hidden`` (fc width) and ``pool_size`` (side of the adaptive pool) exist
    to build a small VGG with the same code, e.g. for gradient checks.
    """

    def __init__(self, cfg, num_classes=1000, hidden=4096, pool_size=7, dropout=0.5):
        super().__init__()
        channels = [v for v in cfg if v != "M"][-1]
        self.features = make_features(cfg)                          # (N, 512, 7, 7) at 224
        self.avgpool = nn.AdaptiveAvgPool2d((pool_size, pool_size))  # -> (N, 512, 7, 7)
        self.classifier = nn.Sequential(
            nn.Linear(channels * pool_size * pool_size, hidden),    # (N, 25088) -> (N, 4096)
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),                              # -> (N, 4096)
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),                         # -> (N, num_classes)
        )
        for m in self.modules():          # torchvision's initialisation
            if isinstance(m, nn.Conv2d):  # He: keeps the variance through 13-16 ReLU layers
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                init.normal_(m.weight, 0.0, 0.01)
                init.zeros_(m.bias)

    def forward(self, x):
        x = self.features(x)          # (N, 512, 7, 7) for 224 x 224 input
        x = self.avgpool(x)           # (N, 512, 7, 7)
        x = x.flatten(1)              # (N, 25088)
        return self.classifier(x)     # (N, num_classes)


def vgg16(num_classes=1000):
    """VGG-16 (configuration D): 13 convs + 3 fc, 138,357,544 parameters."""
    return VGG(CFGS[16], num_classes=num_classes)


def vgg19(num_classes=1000):
    """VGG-19 (configuration E): 16 convs + 3 fc, 143,667,240 parameters."""
    return VGG(CFGS[19], num_classes=num_classes)
