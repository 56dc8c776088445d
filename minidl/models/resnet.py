"""Residual networks (He, Zhang, Ren & Sun, 2016), torchvision's layout.

The idea (the case study): a "plain" network learns a[l+2] = g(z[l+2]); a
residual block adds a shortcut that carries a[l] past two layers::

    z[l+1] = W[l+1] a[l] + b[l+1]       a[l+1] = g(z[l+1])
    z[l+2] = W[l+2] a[l+1] + b[l+2]     a[l+2] = g(z[l+2] + a[l])   <- the skip

If W[l+2] and b[l+2] shrink to 0, a[l+2] = g(a[l]) = a[l]: the block can
always fall back to the identity, so adding blocks does not hurt, and
training error keeps falling with depth (it rises in a deep plain network).

Two kinds of block, as the case study names them:

* identity block: input and output have the same shape, shortcut = a[l];
* convolutional block: the block changes the shape (stride 2 and/or more
  channels), so the shortcut is a projection W_s a[l]: a 1x1 convolution with
  the same stride, then BatchNorm (``downsample`` below).

Here W is a convolution followed by BatchNorm. ``BasicBlock`` (ResNet-18/34)
has two 3x3 convs; ``Bottleneck`` (ResNet-50/101/152) has 1x1 (reduce) -
3x3 - 1x1 (expand 4x), the 1x1 trick of the Inception case study; its stride
is on the 3x3 conv (torchvision's "ResNet v1.5").

    conv1 7x7/2, 64 -> bn1 -> relu -> maxpool 3x3/2      (N, 64, 56, 56) at 224
    layer1 .. layer4: blocks of width 64, 128, 256, 512 (x4 for Bottleneck),
                      stride 1, 2, 2, 2                  (N, 512*e, 7, 7)
    avgpool (global) -> flatten -> fc                    (N, num_classes)

Parameter counts: ResNet-18 11,689,512; -34 21,797,672; -50 25,557,032;
-101 44,549,160; -152 60,192,808. Names and shapes equal torchvision's
(``layer1.0.conv1.weight``, ``layer2.0.downsample.1.running_mean``, ...).
"""
from .. import nn
from ..nn import init


def conv3x3(in_channels, out_channels, stride=1):
    """3x3 convolution, padding 1, no bias (BatchNorm follows and has one)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1,
                     bias=False)


def conv1x1(in_channels, out_channels, stride=1):
    """1x1 convolution, no bias: mixes channels at each pixel."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs and a skip: a[l+2] = relu(z[l+2] + shortcut(a[l])).

    (N, C_in, H, W) -> (N, planes, H / stride, W / stride).
    """
    expansion = 1

    def __init__(self, in_channels, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample      # None: identity block; else: convolutional block

    def forward(self, a):
        shortcut = a if self.downsample is None else self.downsample(a)   # a[l] or W_s a[l]
        z1 = self.bn1(self.conv1(a))      # z[l+1]: (N, planes, H/s, W/s)
        a1 = self.relu(z1)                # a[l+1]
        z2 = self.bn2(self.conv2(a1))     # z[l+2]: (N, planes, H/s, W/s)
        return self.relu(z2 + shortcut)   # a[l+2] = g(z[l+2] + a[l])


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), and a skip: a = relu(z + shortcut(a_in)).

    (N, C_in, H, W) -> (N, 4 * planes, H / stride, W / stride).
    """
    expansion = 4

    def __init__(self, in_channels, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample      # None: identity block; else: convolutional block

    def forward(self, a):
        shortcut = a if self.downsample is None else self.downsample(a)   # a[l] or W_s a[l]
        a1 = self.relu(self.bn1(self.conv1(a)))    # (N, planes, H, W): fewer channels
        a2 = self.relu(self.bn2(self.conv2(a1)))   # (N, planes, H/s, W/s): the 3x3 work
        z3 = self.bn3(self.conv3(a2))              # (N, 4 planes, H/s, W/s)
        return self.relu(z3 + shortcut)            # g(z + a[l])


class ResNet(nn.Module):
    """A ResNet of ``block`` (BasicBlock or Bottleneck) with ``layers[i]`` blocks
    in stage i. ``width`` is the first stage's width (64); a smaller one builds a
    small ResNet with the same code, e.g. for gradient checks.
    """

    def __init__(self, block, layers, num_classes=1000, width=64):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"ResNet: layers must give the number of blocks of the 4 stages, "
                             f"got {layers!r}")
        self.in_channels = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * block.expansion, num_classes)
        for m in self.modules():          # torchvision's initialisation (BatchNorm: 1 and 0)
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes, blocks, stride=1):
        """One stage: a convolutional block if the shape changes, then identity blocks."""
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(conv1x1(self.in_channels, out_channels, stride),
                                       nn.BatchNorm2d(out_channels))
        stage = [block(self.in_channels, planes, stride, downsample)]
        self.in_channels = out_channels
        stage += [block(out_channels, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))   # (N, 64, 112, 112) at 224
        x = self.maxpool(x)                      # (N, 64, 56, 56)
        x = self.layer1(x)                       # (N, 64 e, 56, 56)
        x = self.layer2(x)                       # (N, 128 e, 28, 28)
        x = self.layer3(x)                       # (N, 256 e, 14, 14)
        x = self.layer4(x)                       # (N, 512 e, 7, 7)
        x = self.avgpool(x)                      # (N, 512 e, 1, 1)
        x = x.flatten(1)                         # (N, 512 e)
        return self.fc(x)                        # (N, num_classes)


def resnet18(num_classes=1000):
    """ResNet-18: BasicBlock x [2, 2, 2, 2], 11,689,512 parameters."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes)


def resnet34(num_classes=1000):
    """ResNet-34: BasicBlock x [3, 4, 6, 3], 21,797,672 parameters."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes)


def resnet50(num_classes=1000):
    """ResNet-50: Bottleneck x [3, 4, 6, 3], 25,557,032 parameters."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes)


def resnet101(num_classes=1000):
    """ResNet-101: Bottleneck x [3, 4, 23, 3], 44,549,160 parameters."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes)


def resnet152(num_classes=1000):
    """ResNet-152: Bottleneck x [3, 8, 36, 3], 60,192,808 parameters."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes)
