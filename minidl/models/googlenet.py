"""GoogLeNet / Inception v1 (Szegedy et al., 2014, "Going deeper with convolutions").

The idea (the case study): instead of choosing a filter size, an Inception
module runs 1x1, 3x3 and 5x5 convolutions and a 3x3 max-pool side by side
("same" padding, stride 1) and concatenates their outputs along channels::

    x ─┬─ branch1: 1x1 conv ─────────────────┐
       ├─ branch2: 1x1 conv (reduce) ─ 3x3 ──┤
       ├─ branch3: 1x1 conv (reduce) ─ 5x5 ──┼─ concat: (N, c1 + c3 + c5 + cp, H, W)
       └─ branch4: 3x3 max-pool ─ 1x1 conv ──┘

The 1x1 "bottleneck" convs before the 3x3 and 5x5 make it affordable: a 5x5
"same" conv from 28x28x192 to 32 channels costs 28*28*32 * 5*5*192 =
120,422,400 multiplies; reducing to 16 channels first costs 2,408,448 +
10,035,200 = 12,443,648, ten times fewer. Nine such modules, with max-pools
in between, make the network; two auxiliary classifiers (after 4a and 4d)
add a loss in the middle of the network during training, which regularizes
and helps gradients reach the early layers.

Stage by stage at 224x224: conv1 7x7/2 -> 112, max-pool 3x3/2 -> 56,
conv2 1x1, conv3 3x3 -> 56, max-pool -> 28, inception 3a 3b, max-pool -> 14,
4a 4b 4c 4d 4e, max-pool -> 7, 5a 5b (1024 channels), average pool -> 1,
dropout, fc. Stride-2 max-pools round up (``ceil_mode=True``, as in Caffe),
else 112 would become 55.

Two variants:

* ``"original"``: the paper's table. Every conv has a bias and a ReLU, no
  BatchNorm; LRN after the first max-pool and after the paper's conv2 stage
  (its 1x1 reduce and 3x3 are ``conv2`` and ``conv3`` here, torchvision's
  names), with size 5, alpha 2e-5, beta 0.75, k 1 (the BVLC Caffe model's
  alpha 1e-4 is divided by the size; minidl's is not); a real 5x5 branch; average
  pool 7x7; dropout 0.4. Auxiliary heads: average pool 5x5/3 -> 4x4, 1x1
  conv 128, fc 1024, dropout 0.7, fc num_classes. 6,998,552 parameters
  without the auxiliary heads, 13,378,280 with them.
* ``"torchvision"``: torchvision's ``googlenet``. Each conv is
  ``BasicConv2d`` = conv (no bias) + BatchNorm(eps=0.001) + ReLU; the
  "5x5" branch is a 3x3 conv (as torchvision has it); last pool 2x2/2;
  adaptive pools; dropout 0.2 (0.7 in the heads). 6,624,904 parameters
  without the auxiliary heads, 13,004,888 with; names and shapes equal
  torchvision's (``inception3a.branch2.1.conv.weight``, ``aux1.fc2.weight``).

Outputs: in ``eval()`` the logits (N, num_classes); in ``train()`` with
``aux_logits=True`` the tuple (logits, aux2, aux1), as torchvision.
``googlenet_loss`` weights the auxiliary losses by 0.3, as the paper.
"""
from .. import nn
from ..nn import functional as F
from ..ops.math import cat

VARIANTS = ("original", "torchvision")

# name: (ch1x1, ch3x3 reduce, ch3x3, ch5x5 reduce, ch5x5, pool proj) -- the paper's table 1
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class BasicConv2d(nn.Module):
    """conv -> (BatchNorm) -> ReLU; with ``batch_norm`` the conv has no bias,
    and BatchNorm uses eps=0.001 (torchvision's BasicConv2d)."""

    def __init__(self, in_channels, out_channels, batch_norm, **conv_args):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=not batch_norm, **conv_args)
        if batch_norm:
            self.bn = nn.BatchNorm2d(out_channels, eps=0.001)
        self.batch_norm = batch_norm
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.conv(x)             # (N, out_channels, H', W')
        if self.batch_norm:
            x = self.bn(x)
        return self.relu(x)


class Inception(nn.Module):
    """(N, C_in, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W).

    ``five`` is the kernel of the "5x5" branch (5 in the paper, 3 in torchvision).
    """

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 batch_norm, five):
        super().__init__()
        bn = batch_norm
        self.branch1 = BasicConv2d(in_channels, ch1x1, bn, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, bn, kernel_size=1),             # reduce
            BasicConv2d(ch3x3red, ch3x3, bn, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, bn, kernel_size=1),             # reduce
            BasicConv2d(ch5x5red, ch5x5, bn, kernel_size=five, padding=five // 2))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),  # same H, W
            BasicConv2d(in_channels, pool_proj, bn, kernel_size=1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x):
        branches = [self.branch1(x),      # (N, ch1x1, H, W)
                    self.branch2(x),      # (N, ch3x3, H, W)
                    self.branch3(x),      # (N, ch5x5, H, W)
                    self.branch4(x)]      # (N, pool_proj, H, W)
        return cat(branches, 1)           # (N, out_channels, H, W)


class InceptionAux(nn.Module):
    """Auxiliary classifier on a 14x14 map: pool to 4x4, 1x1 conv 128, fc 1024,
    dropout 0.7, fc. (N, C_in, 14, 14) -> (N, num_classes)."""

    def __init__(self, in_channels, num_classes, batch_norm, pool, width=1.0):
        super().__init__()
        c, hidden = _scale(128, width), _scale(1024, width)
        self.avgpool = pool                                  # -> (N, C_in, 4, 4)
        self.conv = BasicConv2d(in_channels, c, batch_norm, kernel_size=1)  # -> (N, 128, 4, 4)
        self.fc1 = nn.Linear(c * 4 * 4, hidden)              # (N, 2048) -> (N, 1024)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(hidden, num_classes)            # -> (N, num_classes)

    def forward(self, x):
        x = self.conv(self.avgpool(x))                       # (N, 128, 4, 4)
        x = self.relu(self.fc1(x.flatten(1)))                # (N, 1024)
        return self.fc2(self.dropout(x))                     # (N, num_classes)


def _scale(channels, width):
    return max(1, round(channels * width))


class GoogLeNet(nn.Module):
    """Inception v1. ``width`` scales every channel count (1.0 = the paper's);
    a small width builds a small GoogLeNet with the same code, e.g. for
    gradient checks. ``transform_input`` (torchvision variant, for its
    pretrained weights) maps ImageNet-normalized input to the (x - 0.5) / 0.5
    scaling those weights were trained with.
    """

    def __init__(self, num_classes=1000, aux_logits=True, variant="original", width=1.0,
                 transform_input=False):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"googlenet: variant must be one of {VARIANTS}, got {variant!r}")
        if transform_input and variant != "torchvision":
            raise ValueError("googlenet: transform_input exists only for variant='torchvision'")
        original = variant == "original"
        bn, five = not original, (5 if original else 3)
        self.variant, self.aux_logits, self.transform_input = variant, aux_logits, transform_input
        c64, c192 = _scale(64, width), _scale(192, width)

        def maxpool(k=3):
            return nn.MaxPool2d(kernel_size=k, stride=2, ceil_mode=True)

        self.conv1 = BasicConv2d(3, c64, bn, kernel_size=7, stride=2, padding=3)  # -> 112
        self.maxpool1 = maxpool()                                                  # -> 56
        if original:
            self.lrn1 = nn.LocalResponseNorm(5, alpha=2e-5, beta=0.75, k=1.0)
        self.conv2 = BasicConv2d(c64, c64, bn, kernel_size=1)
        self.conv3 = BasicConv2d(c64, c192, bn, kernel_size=3, padding=1)        # 56
        if original:
            self.lrn2 = nn.LocalResponseNorm(5, alpha=2e-5, beta=0.75, k=1.0)
        self.maxpool2 = maxpool()                                                  # -> 28
        in_channels = c192
        for name in INCEPTION:
            block = Inception(in_channels, *(_scale(c, width) for c in INCEPTION[name]),
                              batch_norm=bn, five=five)
            setattr(self, "inception" + name, block)
            in_channels = block.out_channels
            if name == "3b":
                self.maxpool3 = maxpool()                                          # -> 14
            if name == "4e":                      # the paper: 3x3/2; torchvision: 2x2/2
                self.maxpool4 = maxpool(3 if original else 2)                      # -> 7
        if aux_logits:
            def aux_pool():
                return nn.AvgPool2d(5, stride=3) if original else nn.AdaptiveAvgPool2d((4, 4))
            self.aux1 = InceptionAux(self.inception4a.out_channels, num_classes, bn,
                                     aux_pool(), width)
            self.aux2 = InceptionAux(self.inception4d.out_channels, num_classes, bn,
                                     aux_pool(), width)
        self.avgpool = nn.AvgPool2d(7, stride=1) if original else nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.4 if original else 0.2)
        self.fc = nn.Linear(in_channels, num_classes)

    def _transform_input(self, x):
        """Per channel: x * std / 0.5 + (mean - 0.5) / 0.5 with ImageNet's mean, std."""
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        channels = [x[:, c:c + 1] * (std[c] / 0.5) + (mean[c] - 0.5) / 0.5 for c in range(3)]
        return cat(channels, 1)                 # (N, 3, H, W)

    def forward(self, x):
        if self.transform_input:
            x = self._transform_input(x)
        x = self.maxpool1(self.conv1(x))        # (N, 64, 56, 56) at 224
        if self.variant == "original":
            x = self.lrn1(x)
        x = self.conv3(self.conv2(x))           # (N, 192, 56, 56)
        if self.variant == "original":
            x = self.lrn2(x)
        x = self.maxpool2(x)                    # (N, 192, 28, 28)
        x = self.inception3b(self.inception3a(x))   # (N, 480, 28, 28)
        x = self.maxpool3(x)                    # (N, 480, 14, 14)
        x = self.inception4a(x)                 # (N, 512, 14, 14)
        use_aux = self.aux_logits and self.training
        aux1 = self.aux1(x) if use_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))   # (N, 528, 14, 14)
        aux2 = self.aux2(x) if use_aux else None
        x = self.maxpool4(self.inception4e(x))  # (N, 832, 7, 7)
        x = self.inception5b(self.inception5a(x))   # (N, 1024, 7, 7)
        x = self.avgpool(x).flatten(1)          # (N, 1024)
        logits = self.fc(self.dropout(x))       # (N, num_classes)
        return (logits, aux2, aux1) if use_aux else logits


def googlenet(num_classes=1000, aux_logits=True, variant="original", transform_input=False):
    """GoogLeNet (Inception v1), ``variant="original"`` (the paper) or
    ``"torchvision"``; see the module docstring for the parameter counts."""
    return GoogLeNet(num_classes=num_classes, aux_logits=aux_logits, variant=variant,
                     transform_input=transform_input)


def googlenet_loss(outputs, target, aux_weight=0.3):
    """Training loss: CE(logits) + 0.3 * (CE(aux1) + CE(aux2)), as the paper.

    ``outputs`` is what GoogLeNet returned: the tuple (logits, aux2, aux1) in
    training with auxiliary heads, else the logits alone (then CE(logits)).
    """
    if not isinstance(outputs, tuple):
        return F.cross_entropy(outputs, target)
    logits, aux2, aux1 = outputs
    return (F.cross_entropy(logits, target)
            + aux_weight * (F.cross_entropy(aux1, target) + F.cross_entropy(aux2, target)))
