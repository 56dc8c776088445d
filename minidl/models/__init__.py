"""The case-study networks: LeNet-5, AlexNet, VGG, ResNet, GoogLeNet.

Each file builds one family and its docstring tells what the network
teaches, with its layer table and parameter count. The torchvision-
compatible networks (alexnet(variant="torchvision"), vgg16/19, resnet*,
googlenet(variant="torchvision")) have torchvision's parameter names and
shapes: ``python -m minidl.convert`` turns torchvision weights into files
they load (see minidl/convert.py).

``get(name, **kwargs)`` builds a network by name and ``input_shape(name)``
gives its (C, H, W) input, for the command line (``minidl summary NET``).
"""
from .lenet import LeNet5, lenet5
from .alexnet import AlexNet, alexnet
from .vgg import VGG, vgg16, vgg19
from .resnet import ResNet, BasicBlock, Bottleneck, resnet18, resnet34, resnet50, \
    resnet101, resnet152
from .googlenet import GoogLeNet, googlenet, googlenet_loss

# name: (builder, (C, H, W) input of the paper)
NETWORKS = {
    "lenet5": (lenet5, (1, 32, 32)),
    "alexnet": (alexnet, (3, 227, 227)),
    "vgg16": (vgg16, (3, 224, 224)),
    "vgg19": (vgg19, (3, 224, 224)),
    "resnet18": (resnet18, (3, 224, 224)),
    "resnet34": (resnet34, (3, 224, 224)),
    "resnet50": (resnet50, (3, 224, 224)),
    "resnet101": (resnet101, (3, 224, 224)),
    "resnet152": (resnet152, (3, 224, 224)),
    "googlenet": (googlenet, (3, 224, 224)),
}


def _lookup(name):
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose from {', '.join(NETWORKS)}")
    return NETWORKS[name]


def get(name, **kwargs):
    """Build network ``name`` (a key of NETWORKS) with the builder's keyword
    arguments, e.g. ``get("alexnet", variant="torchvision", num_classes=10)``."""
    return _lookup(name)[0](**kwargs)


def input_shape(name):
    """The (C, H, W) input network ``name`` was designed for."""
    return _lookup(name)[1]


__all__ = ["LeNet5", "lenet5", "AlexNet", "alexnet", "VGG", "vgg16", "vgg19", "ResNet",
           "BasicBlock", "Bottleneck", "resnet18", "resnet34", "resnet50", "resnet101",
           "resnet152", "GoogLeNet", "googlenet", "googlenet_loss", "NETWORKS", "get",
           "input_shape"]
