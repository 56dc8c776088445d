"""Neural-network building blocks: ``Module`` and its containers, the layers,
``functional`` (import as F) and ``init``.

    from minidl import nn
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
"""
from . import functional, init
from .module import Module, Parameter, Sequential, ModuleList, functional_call
from .layers import (Linear, Conv2d, BatchNorm2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
                     LocalResponseNorm, ReLU, Tanh, Sigmoid, Softmax, LogSoftmax, Dropout,
                     Identity, Flatten)

__all__ = ["functional", "init", "Module", "Parameter", "Sequential", "ModuleList",
           "functional_call",
           "Linear", "Conv2d", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "LocalResponseNorm", "ReLU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax",
           "Dropout", "Identity", "Flatten"]
