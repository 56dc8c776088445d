"""Training and evaluation loops, checkpoints, and resuming.

    history = fit(model, train_loader, test_loader, optimizer, epochs=10,
                  checkpoint="runs/lenet5/checkpoint.npz")

``fit`` trains epoch by epoch with a tqdm progress bar (loss, accuracy,
images/s), evaluates on the held-out loader, and after every epoch writes an
atomic checkpoint (``minidl.save`` writes a temporary file and renames it):
the model, the optimizer, the scheduler, the epoch, the history and the state
of minidl's random generator (dropout, initialisation). Calling ``fit`` again
with the same checkpoint resumes after the last completed epoch; with the
same seed the final weights equal those of an uninterrupted run, because the
loader reshuffles from (seed, epoch) and the generator state is restored.

Ctrl-C during training saves the current weights to ``<checkpoint>.interrupted.npz``
(leaving the last completed epoch's checkpoint intact) and re-raises.
"""
import json
import os
import time

import numpy as np


from .io import load, save
from .ops.loss import cross_entropy
from .tensor import Tensor, default_rng, no_grad


def train_one_epoch(model, loader, optimizer, loss_fn=None, progress=True, desc="train"):
    """One pass over ``loader``; returns {"loss", "accuracy", "images_per_s"}."""
    loss_fn = loss_fn or _default_loss
    model.train()
    total_loss, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    bar = _progress(loader, desc, progress)
    device = _device_of(model)
    for images, labels in bar:
        _check_labels(labels)
        images, labels = images.to(device), labels.to(device)   # batches come on the CPU
        optimizer.zero_grad()
        output = model(images)
        loss = loss_fn(output, labels)
        loss.backward()
        optimizer.step()
        logits = output[0] if isinstance(output, tuple) else output
        n = labels.shape[0]
        total_loss += loss.item() * n
        correct += int((logits.data.argmax(1) == labels.data).sum())
        seen += n
        if progress:
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}",
                            img_s=f"{seen / (time.perf_counter() - start):.0f}")
    elapsed = time.perf_counter() - start
    return {"loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1),
            "images_per_s": seen / max(elapsed, 1e-9)}


def evaluate(model, loader, progress=False, predict=None):
    """Mean cross-entropy and accuracy of ``model`` on ``loader`` (eval mode).

    ``predict(model, images)`` may replace the plain forward (e.g. ten-crop);
    it must return class probabilities or logits of shape (N, classes)."""
    was_training = model.training
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    device = _device_of(model)
    with no_grad():
        for images, labels in _progress(loader, "eval", progress):
            images, labels = images.to(device), labels.to(device)
            scores = predict(model, images) if predict else model(images)
            if predict is None:
                total_loss += cross_entropy(scores, labels).item() * labels.shape[0]
            correct += int((scores.data.argmax(1) == labels.data).sum())
            seen += labels.shape[0]
    model.train(was_training)
    return {"loss": total_loss / max(seen, 1) if predict is None else float("nan"),
            "accuracy": correct / max(seen, 1)}


def fit(model, train_loader, test_loader, optimizer, epochs, scheduler=None,
        checkpoint=None, loss_fn=None, progress=True, log=print, write_checkpoints=True):
    """Train for ``epochs`` epochs, resuming from ``checkpoint`` if it exists.

    ``write_checkpoints=False`` only reads the checkpoint (the non-zero ranks
    of a distributed run, where rank 0 writes).

    Returns the history: a list of per-epoch dicts (train loss/accuracy,
    test loss/accuracy, images/s, seconds)."""
    history, start_epoch = [], 0
    if checkpoint and os.path.exists(checkpoint):
        start_epoch, history = load_checkpoint(checkpoint, model, optimizer, scheduler)
        log(f"resumed from {checkpoint} after epoch {start_epoch}")
    for epoch in range(start_epoch, epochs):
        train_loader.epoch = epoch            # the loader reshuffles from (seed, epoch)
        t0 = time.perf_counter()
        try:
            train = train_one_epoch(model, train_loader, optimizer, loss_fn, progress,
                                    desc=f"epoch {epoch + 1}/{epochs}")
        except KeyboardInterrupt:
            if checkpoint and write_checkpoints:
                path = _interrupted_path(checkpoint)
                save_checkpoint(path, model, optimizer, scheduler, epoch, history)
                log(f"\ninterrupted: weights saved to {path}; {checkpoint} still holds "
                    f"epoch {epoch}")
            raise
        if scheduler is not None:
            scheduler.step()
        test = evaluate(model, test_loader)
        record = {"epoch": epoch + 1, "train_loss": train["loss"],
                  "train_accuracy": train["accuracy"], "test_loss": test["loss"],
                  "test_accuracy": test["accuracy"], "images_per_s": train["images_per_s"],
                  "seconds": time.perf_counter() - t0}
        history.append(record)
        log(f"epoch {epoch + 1:3d}  train loss {train['loss']:.4f}  acc "
            f"{100 * train['accuracy']:.1f}%  |  test loss {test['loss']:.4f}  acc "
            f"{100 * test['accuracy']:.1f}%  ({train['images_per_s']:.0f} img/s)")
        if checkpoint and write_checkpoints:
            save_checkpoint(checkpoint, model, optimizer, scheduler, epoch + 1, history)
    return history


# ----------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------
def save_checkpoint(path, model, optimizer=None, scheduler=None, epoch=0, history=(),
                    meta=None):
    """Write everything needed to resume, atomically, as one .npz (no pickle)."""
    obj = {"model": model.state_dict(), "epoch": np.int64(epoch),
           "history": np.array(json.dumps(list(history))),
           "rng": np.array(json.dumps(default_rng().bit_generator.state)),
           "meta": np.array(json.dumps(meta or getattr(model, "meta", {}) or {}))}
    if optimizer is not None:
        obj["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        obj["scheduler"] = scheduler.state_dict()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    save(obj, path)


def load_checkpoint(path, model, optimizer=None, scheduler=None):
    """Restore a checkpoint written by ``save_checkpoint``; returns (epoch, history)."""
    ckpt = load(path)
    for key in ("model", "epoch"):
        if key not in ckpt:
            raise ValueError(f"{path}: not a minidl training checkpoint (no '{key}' entry)")
    model.load_state_dict(ckpt["model"])
    if optimizer is not None and "optimizer" in ckpt:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and "scheduler" in ckpt:
        scheduler.load_state_dict(ckpt["scheduler"])
    if "rng" in ckpt:
        default_rng().bit_generator.state = json.loads(str(ckpt["rng"]))
    history = json.loads(str(ckpt["history"])) if "history" in ckpt else []
    return int(ckpt["epoch"]), history


def checkpoint_meta(path):
    """The ``meta`` record of a checkpoint (architecture, classes, input size...)."""
    ckpt = load(path)
    if "model" not in ckpt:
        raise ValueError(f"{path}: not a minidl training checkpoint (no 'model' entry)")
    return json.loads(str(ckpt["meta"])) if "meta" in ckpt else {}, ckpt["model"]


def _interrupted_path(checkpoint):
    root, ext = os.path.splitext(checkpoint)
    return f"{root}.interrupted{ext or '.npz'}"


# ----------------------------------------------------------------------------
def _default_loss(output, labels):
    if isinstance(output, tuple):          # GoogLeNet in training: (logits, aux2, aux1)
        from .models.googlenet import googlenet_loss
        return googlenet_loss(output, labels)
    return cross_entropy(output, labels)


def _device_of(model):
    """The device of the model's parameters ("cpu" if it has none)."""
    return next((p.device for p in model.parameters()), "cpu")


def _check_labels(labels):
    data = labels.data if isinstance(labels, Tensor) else labels
    if data.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer class indices, got dtype {data.dtype}")


def _progress(iterable, desc, enabled):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)
