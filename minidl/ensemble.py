"""Ensembling and multi-crop at test time (the case studies' last advice).

Both average class probabilities over several predictions of one image:

* ensembling: several independently trained networks,
      p(y | x) = 1/M sum_m softmax(f_m(x));
* multi-crop (ten-crop): one network, ten views of the image — the four
  corner crops and the centre crop, each also mirrored left-right,
      p(y | x) = 1/10 sum_v softmax(f(crop_v(x))).

They help benchmarks and competitions, at M or 10 times the inference cost;
production systems rarely pay it.
"""
from . import nn
from .backend import get_array_module
from .ops.loss import softmax
from .ops.math import stack
from .tensor import Tensor, no_grad


class Ensemble(nn.Module):
    """Average of the softmax outputs of several models: (N, C) probabilities."""

    def __init__(self, models):
        super().__init__()
        models = list(models)
        if not models:
            raise ValueError("Ensemble: needs at least one model")
        self.members = nn.ModuleList(models)

    def forward(self, x):
        probs = [softmax(_logits(m(x)), 1) for m in self.members]
        return stack(probs, 0).mean(axis=0)


def ten_crop(images, size, mirror=True):
    """The ten views of each image: (10, N, C, size, size) as a Tensor.

    Order: top-left, top-right, bottom-left, bottom-right, centre, then the
    same five mirrored. ``mirror=False`` keeps the first five only (for
    images whose mirror image is another class, such as digits).
    ``images`` is (N, C, H, W) with H, W >= size."""
    x = images.data if isinstance(images, Tensor) else images
    if x.ndim != 4:
        raise ValueError(f"ten_crop: images must be (N, C, H, W), got shape {x.shape}")
    h, w = x.shape[2:]
    sh, sw = (size, size) if isinstance(size, int) else size
    if sh > h or sw > w:
        raise ValueError(f"ten_crop: crop size {(sh, sw)} is larger than the images "
                         f"{(h, w)}")
    top, left = (h - sh) // 2, (w - sw) // 2
    corners = [(0, 0), (0, w - sw), (h - sh, 0), (h - sh, w - sw), (top, left)]
    crops = [x[:, :, i:i + sh, j:j + sw] for i, j in corners]
    if mirror:
        crops += [c[..., ::-1] for c in crops]
    xp = get_array_module(x)
    return Tensor(xp.ascontiguousarray(xp.stack(crops)))


def predict_ten_crop(model, images, size, mirror=True):
    """Class probabilities (N, C) averaged over the ten crops of each image
    (five without mirrors); ``model`` may be an Ensemble."""
    views = ten_crop(images, size, mirror)
    probs = [predict(model, views[v]) for v in range(views.shape[0])]
    return stack(probs, 0).mean(axis=0)


def predict(model, images):
    """Class probabilities (N, C) of ``model`` (or an Ensemble) in eval mode."""
    was_training = model.training
    model.eval()
    with no_grad():
        out = model(images)
        probs = out if isinstance(model, Ensemble) else softmax(_logits(out), 1)
    model.train(was_training)
    return probs


def _logits(output):
    return output[0] if isinstance(output, tuple) else output
