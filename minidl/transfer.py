"""Transfer learning, as the case studies advise it.

With little data, take a network trained on a big data set, freeze its
layers, replace the last (softmax) layer with one for your classes and train
only that. With more data, freeze fewer layers and fine-tune the rest.

Two routes to train a new head on a frozen trunk:

1. end to end: ``freeze`` the trunk, run trunk + head on every batch and
   update only the head (the trunk is recomputed every epoch);
2. the lectures' shortcut: run the frozen trunk ONCE over the data set,
   ``precompute_features`` to disk, and train a shallow head on the saved
   features. Same mathematics (the trunk is a fixed function in eval mode),
   so both routes reach the same weights for the same batches; the second
   skips the trunk's forward pass in every later epoch.
"""
import os

import numpy as np

from . import nn
from .data import TensorDataset
from .io import load, save
from .tensor import Tensor, no_grad


def freeze(module):
    """Stop gradients for every parameter of ``module``; returns it."""
    module.requires_grad_(False)
    return module


def unfreeze(module):
    module.requires_grad_(True)
    return module


def freeze_prefix(model, upto):
    """Freeze the children of ``model`` from the first up to and including the
    child named ``upto`` (e.g. "layer3" of a ResNet, "features" of a VGG);
    the later children stay trainable. Returns the frozen names."""
    names = [name for name, _ in model.named_children()]
    if upto not in names:
        raise ValueError(f"freeze_prefix: no child named {upto!r}; children are {names}")
    frozen = names[:names.index(upto) + 1]
    for name, child in model.named_children():
        child.requires_grad_(name not in frozen)
    return frozen


def replace_head(model, name, num_classes):
    """Replace the Linear layer at dotted path ``name`` (e.g. "fc",
    "classifier.6") by a freshly initialised Linear with ``num_classes``
    outputs; returns the new layer."""
    parent, attr = _parent_and_attr(model, name)
    old = getattr(parent, attr) if not attr.isdigit() else parent[int(attr)]
    if not isinstance(old, nn.Linear):
        raise TypeError(f"replace_head: {name} is a {type(old).__name__}, expected Linear")
    new = nn.Linear(old.in_features, num_classes)
    new.to(old.weight.device)
    if old.weight.dtype != new.weight.dtype:
        new.double() if old.weight.dtype == np.float64 else new.float()
    if attr.isdigit():
        parent[int(attr)] = new
    else:
        setattr(parent, attr, new)
    return new


def trainable_parameters(model):
    """The parameters an optimizer should update (those requiring grad)."""
    return [p for p in model.parameters() if p.requires_grad]


def precompute_features(trunk, loader, path=None):
    """Run the frozen ``trunk`` (in eval mode) once over ``loader`` and return a
    TensorDataset of (features, labels); with ``path``, also save them as .npz
    (and load them from there on a later call). Features are flattened to
    (N, D)."""
    if path and os.path.exists(path):
        saved = load(path)
        return TensorDataset(saved["features"], saved["labels"])
    was_training = trunk.training
    trunk.eval()
    feats, labels = [], []
    with no_grad():
        for images, y in loader:
            out = trunk(images)
            feats.append(out.reshape(out.shape[0], -1).numpy())
            labels.append(y.numpy())
    trunk.train(was_training)
    features, labels = np.concatenate(feats), np.concatenate(labels)
    if path:
        save({"features": features, "labels": labels}, path)
    return TensorDataset(features, labels)


class FrozenTrunkClassifier(nn.Module):
    """trunk (frozen, always in eval mode) -> flatten -> head."""

    def __init__(self, trunk, head):
        super().__init__()
        self.trunk = freeze(trunk)
        self.head = head

    def train(self, mode=True):
        super().train(mode)
        self.trunk.eval()          # a frozen trunk keeps BN statistics and no dropout
        return self

    def forward(self, x):
        with no_grad():
            f = self.trunk(x)
        f = Tensor(f.data)
        return self.head(f.reshape(f.shape[0], -1))


def _parent_and_attr(model, dotted):
    parts = dotted.split(".")
    parent = model
    for p in parts[:-1]:
        parent = parent[int(p)] if p.isdigit() else getattr(parent, p)
    return parent, parts[-1]
