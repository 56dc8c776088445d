"""Ready-made jobs behind the command line: train LeNet-5 on the digits,
gradient-check a reduced network, classify image files from a checkpoint.

Each is a short script over the public API; read them as worked examples.
"""
import os
import time

import numpy as np

from . import models, optim
from .data import DataLoader, TensorDataset, load_digits, load_image, sample_images
from .data import transforms as T
from .ensemble import Ensemble, predict, predict_ten_crop
from .gradcheck import gradcheck
from .nn import functional_call
from .tensor import Tensor, manual_seed
from .training import checkpoint_meta, evaluate, fit

TRAINABLE_ON_DIGITS = ("lenet5",)


# ----------------------------------------------------------------------------
# the main job
# ----------------------------------------------------------------------------
def digits_loaders(batch_size=32, seed=0, workers=1, augment=False, sampler=None):
    """Train/test DataLoaders over the bundled digits, standardised with the
    training set's mean and std; returns (train_loader, test_loader, mean, std).

    With a ``DistributedSampler`` the train loader reads this rank's shard."""
    xtr, ytr = load_digits(32, "train")
    xte, yte = load_digits(32, "test")
    mean, std = float(xtr.mean()), float(xtr.std())
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    train_set = TensorDataset(xtr, ytr)
    transform = None
    if augment:
        fill = -mean / std                      # the background after standardising
        transform = T.Compose([T.RandomCrop(32, padding=2, fill=fill),
                               T.RandomRotation(10, fill=fill)])
    if sampler is None:
        train = DataLoader(train_set, batch_size=batch_size, shuffle=True, seed=seed,
                           num_workers=workers, transform=transform)
    else:                                       # the shard is shuffled by the sampler
        train = _ShardLoader(DataLoader(sampler.shard(train_set), batch_size=batch_size,
                                        seed=seed + 1000 * (sampler.rank + 1),
                                        num_workers=workers, transform=transform), sampler)
    test = DataLoader(TensorDataset(xte, yte), batch_size=256)
    return train, test, mean, std


def train_on_digits(net="lenet5", epochs=15, batch_size=32, lr=0.05, seed=0, workers=1,
                    augment=True, out="runs/lenet5", resume=True, progress=True,
                    log=print):
    """Train ``net`` on the digits with SGD (momentum 0.9) and a cosine learning
    rate; write ``out/checkpoint.npz`` each epoch and ``out/training_curve.png``.
    Returns a report dict (test accuracy, parameters, timing, paths).

    Started under mpirun (``minidl train lenet5 --nproc 2``), every rank trains
    on its shard with batch ``batch_size`` and the gradients are averaged;
    rank 0 prints and writes the checkpoint, the other ranks return None."""
    if net not in TRAINABLE_ON_DIGITS:
        models.input_shape(net)                 # unknown names list the known ones
        raise ValueError(f"minidl train: the bundled digits are 32x32x1, which only "
                         f"{', '.join(TRAINABLE_ON_DIGITS)} takes; build {net} in Python "
                         f"(minidl.models.{net}) to train it on your own data")
    manual_seed(seed)
    model = models.get(net)
    meta = {"arch": net, "num_classes": 10, "input_shape": [1, 32, 32]}
    sampler, is_main = None, True
    if _under_mpirun():
        from . import distributed as dist
        dist.init()
        model = dist.DistributedDataParallel(model)     # rank 0's weights everywhere
        sampler = dist.DistributedSampler(len(load_digits(32, "train")[1]), shuffle=True,
                                          seed=seed)
        is_main, log = dist.is_main_process(), dist.print0
        progress = progress and is_main
    train, test, mean, std = digits_loaders(batch_size, seed, workers, augment, sampler)
    # a mirrored digit is not the same digit: ten-crop must not mirror them
    model.meta = dict(meta, mean=mean, std=std, dataset="digits", mirror=False)
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    scheduler = optim.CosineAnnealingLR(optimizer, T_max=epochs)
    if sampler is not None:
        optimizer = _AllreduceBeforeStep(model, optimizer)
    checkpoint = os.path.join(out, "checkpoint.npz")
    if not resume and is_main and os.path.exists(checkpoint):
        os.remove(checkpoint)
    history = fit(model, train, test, optimizer, epochs, scheduler=scheduler,
                  checkpoint=checkpoint, progress=progress, log=log,
                  write_checkpoints=is_main)
    if not is_main:
        return None
    final = evaluate(model, test)
    curve = os.path.join(out, "training_curve.png")
    plot_history(history, curve, title=f"{net} on digits")
    world = 1 if sampler is None else sampler.num_replicas
    return {"test_accuracy": final["accuracy"], "test_loss": final["loss"],
            "params": sum(int(p.size) for p in model.parameters()),
            "n_train": len(train.dataset) * world, "n_test": len(test.dataset),
            "images_per_s": world * np.mean([h["images_per_s"] for h in history])
            if history else 0.0,
            "checkpoint": checkpoint, "curve": curve, "history": history}


def _under_mpirun():
    """True inside an MPI job of more than one process (Open MPI, MPICH, PMIx)."""
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"):
        if int(os.environ.get(name, "1")) > 1:
            return True
    return False


class _ShardLoader:
    """A DataLoader over a rank's shard whose epoch also moves the sampler."""

    def __init__(self, loader, sampler):
        self.loader, self.sampler, self.dataset = loader, sampler, loader.dataset

    @property
    def epoch(self):
        return self.loader.epoch

    @epoch.setter
    def epoch(self, value):
        self.sampler.set_epoch(value)
        self.loader.epoch = value

    def __iter__(self):
        return iter(self.loader)

    def __len__(self):
        return len(self.loader)


class _AllreduceBeforeStep:
    """An optimizer whose step() first averages the gradients over the ranks."""

    def __init__(self, ddp, optimizer):
        self.ddp, self.optimizer = ddp, optimizer

    def step(self):
        self.ddp.allreduce_gradients()
        self.optimizer.step()

    def __getattr__(self, name):            # zero_grad, state_dict, param_groups ...
        return getattr(self.optimizer, name)


def plot_history(history, path, title=""):
    """Loss and accuracy per epoch, train and test, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(epochs, [h["test_loss"] for h in history], "s-", label="test")
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax2.plot(epochs, [100 * h["train_accuracy"] for h in history], "o-", label="train")
    ax2.plot(epochs, [100 * h["test_accuracy"] for h in history], "s-", label="test")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------
# gradient check of a network family at reduced size
# ----------------------------------------------------------------------------
def _small_networks():
    from .models import AlexNet, BasicBlock, Bottleneck, GoogLeNet, ResNet, VGG
    vgg = ([4, 4, "M", 8, "M", 8, "M"], dict(num_classes=3, hidden=8, pool_size=2))
    return {
        "lenet5": (lambda: models.lenet5(), (2, 1, 32, 32), "full size"),
        "alexnet": (lambda: AlexNet(num_classes=3, channels=(8,) * 5, hidden=16),
                    (2, 3, 227, 227), "8 filters per conv, fc 16"),
        "vgg16": (lambda: VGG(vgg[0], **vgg[1]), (2, 3, 16, 16), "3 stages of 4-8 filters"),
        "vgg19": (lambda: VGG(vgg[0], **vgg[1]), (2, 3, 16, 16), "3 stages of 4-8 filters"),
        "resnet18": (lambda: ResNet(BasicBlock, [1, 1, 1, 1], num_classes=3, width=4),
                     (2, 3, 32, 32), "basic blocks [1,1,1,1], width 4"),
        "resnet50": (lambda: ResNet(Bottleneck, [1, 1, 1, 1], num_classes=3, width=4),
                     (2, 3, 32, 32), "bottleneck blocks [1,1,1,1], width 4"),
        "googlenet": (lambda: GoogLeNet(num_classes=3, width=1 / 16), (2, 3, 224, 224),
                      "1/16 of the channels, aux heads on"),
    }


def gradcheck_network(name, seed=0):
    """Directional float64 gradcheck of d output / d (input, every parameter) of
    a reduced-size network of the family ``name``; returns (ok, seconds, desc)."""
    family = {"resnet34": "resnet18", "resnet101": "resnet50",
              "resnet152": "resnet50"}.get(name, name)
    small = _small_networks()
    if family not in small:
        models.input_shape(name)                # unknown names list the known ones
    build, shape, desc = small[family]
    manual_seed(seed)
    model = build().double()
    params = [Tensor(p.data.copy(), requires_grad=True) for p in model.parameters()]
    x = Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)

    def forward(x, *ps):
        manual_seed(seed)                       # the same dropout masks every call
        return functional_call(model, ps, x)

    t0 = time.perf_counter()
    ok = gradcheck(forward, [x, *params], mode="directional", atol=1e-8, rtol=1e-4)
    return ok, time.perf_counter() - t0, desc


# ----------------------------------------------------------------------------
# prediction from checkpoints
# ----------------------------------------------------------------------------
def read_image(path_or_name):
    """(3, H, W) float32 in [0, 1]: an image file, or 'china' / 'flower'."""
    samples = ("china", "flower")
    if path_or_name in samples:
        return sample_images()[path_or_name]
    if not os.path.exists(path_or_name):
        raise FileNotFoundError(f"no such image file: {path_or_name} (or use one of the "
                                f"bundled photos: {', '.join(samples)})")
    try:
        return load_image(path_or_name)
    except Exception as e:
        raise ValueError(f"cannot read image {path_or_name}: {e}") from None


def load_trained(checkpoint):
    """Rebuild the network of a ``minidl train`` checkpoint and load its weights."""
    meta, state = checkpoint_meta(checkpoint)
    if "arch" not in meta:
        raise ValueError(f"{checkpoint}: the checkpoint has no architecture record "
                         f"(it was not written by minidl train)")
    model = models.get(meta["arch"], num_classes=meta["num_classes"])
    model.load_state_dict(state)
    model.meta = meta
    return model.eval()


def prepare_images(paths, meta, margin=0):
    """Files -> (N, C, H, W) float32 batch as the network saw its training data:
    grey or RGB, resized to the input size (+ ``margin`` for cropping),
    standardised with the training mean and std."""
    c, h, w = meta["input_shape"]
    batch = []
    for p in paths:
        img = read_image(p)                                   # (3, H0, W0) in [0, 1]
        if c == 1:
            img = img.mean(axis=0, keepdims=True)
        img = T.Resize((h + margin, w + margin))(img)
        batch.append((img - meta.get("mean", 0.0)) / meta.get("std", 1.0))
    return Tensor(np.stack(batch).astype(np.float32))


def predict_files(checkpoint, paths, ten_crop=False, ensemble=()):
    """Yield (path, class, probability) for each image file."""
    members = [load_trained(c) for c in [checkpoint, *ensemble]]
    meta = members[0].meta
    for other, path in zip(members[1:], ensemble):
        if other.meta["input_shape"] != meta["input_shape"]:
            raise ValueError(f"--ensemble: {path} takes inputs {other.meta['input_shape']}, "
                             f"{checkpoint} takes {meta['input_shape']}")
    model = Ensemble(members) if len(members) > 1 else members[0]
    size = meta["input_shape"][1]
    if ten_crop:
        images = prepare_images(paths, meta, margin=max(2, size // 8))
        probs = predict_ten_crop(model, images, size, mirror=meta.get("mirror", True))
    else:
        probs = predict(model, prepare_images(paths, meta))
    p = probs.numpy()
    for path, row in zip(paths, p):
        k = int(row.argmax())
        yield path, k, float(row[k])
