"""Claim: data augmentation helps when the training set is small.

The lectures: more data almost always helps computer vision; when you
cannot collect it, distort the images you have (mirroring, random crops,
rotation, shearing, local warping, colour shifts), a new distortion each
time an image is used, by a CPU thread that feeds the training loop.

Here: the same small training subset of the digits (k images per class),
LeNet-5 (ReLU, max-pool) trained for the same number of SGD steps with and
without augmentation, and tested on the 360 held-out digits. The
augmentation is the one ``minidl train --augment`` uses: a random crop of
the image padded by 2 pixels (shifts of up to +-2 pixels) and a random
rotation of up to +-10 degrees. No mirroring: a mirrored digit is another
symbol. Each seed draws its own subset and initialisation; with and
without augmentation share them, so the comparison is paired.
"""
import math
import time

import numpy as np

from common import (accuracy, digits, figure, loader, markdown_table, mean_std, parse,
                    parser, per_class_subset, report, run_tasks, save_figure, timed, train)

import minidl
from minidl import models
from minidl.data import transforms as T

NAME = "data_augmentation"


def augmentation(fill):
    """Shift by up to 2 pixels and rotate by up to 10 degrees; ``fill`` the
    uncovered pixels with the background value."""
    return T.Compose([T.RandomCrop(32, padding=2, fill=fill), T.RandomRotation(10, fill=fill)])


def run_one(k, seed, augment, data, steps):
    """Train LeNet-5 on k images per class; returns (test accuracy %, seconds)."""
    (xtr, ytr), (xte, yte) = data
    pick = per_class_subset(ytr, k, seed)
    fill = float(xtr.min())                       # the background after standardising
    transform = augmentation(fill) if augment else None
    batches = loader(xtr[pick], ytr[pick], 32, seed, transform=transform)
    minidl.manual_seed(seed)
    model = models.lenet5(activation="relu", pool="max")
    _, seconds = timed(train, model, batches, math.ceil(steps / len(batches)), lr=0.02)
    acc = accuracy(model, xte, yte)
    print(f"k = {k:3d}, seed {seed}, {'with' if augment else 'no'} augmentation: "
          f"{acc:.1f}% ({seconds:.0f} s)", flush=True)
    return acc, seconds


def main(argv=None):
    p = parser(__doc__.split("\n")[0], seeds=5, jobs=True)
    p.add_argument("--labels", type=int, nargs="+", default=[5, 10, 30],
                   help="training images per class")
    p.add_argument("--steps", type=int, default=400, help="SGD steps of batch 32")
    args = parse(p, argv)
    if args.quick:
        args.labels, args.seeds, args.steps = [5], 1, 10
    data = digits(32)
    tasks = [(k, seed, augment, data, args.steps) for k in args.labels
             for seed in range(args.seeds) for augment in (False, True)]
    t0 = time.perf_counter()
    results = run_tasks(run_one, tasks, args)
    total = time.perf_counter() - t0
    acc = {(k, aug): np.array([r[0] for (kk, _, a, *_), r in zip(tasks, results)
                               if kk == k and a == aug])
           for k in args.labels for aug in (False, True)}
    secs = {aug: np.mean([r[1] for (_, _, a, *_), r in zip(tasks, results) if a == aug])
            for aug in (False, True)}
    rows = []
    for k in args.labels:
        gain = acc[(k, True)] - acc[(k, False)]            # paired, per seed
        rows.append([k, 10 * k, mean_std(acc[(k, False)]), mean_std(acc[(k, True)]),
                     mean_std(gain), f"{int((gain > 0).sum())} / {len(gain)}"])
    table = markdown_table(["per class", "training images", "no augmentation %",
                            "with augmentation %", "gain (points)", "seeds improved"], rows)
    plot(acc, data, args)
    report(NAME, args, "Data augmentation on a small training set",
           f"LeNet-5, {args.steps} SGD steps of batch 32, test accuracy on the 360 held-out "
           f"digits, mean ± std over {args.seeds} seeds (each its own subset). Training "
           f"time per run: {secs[False]:.1f} s without, {secs[True]:.1f} s with "
           f"augmentation.\n\n{table}\n\n![augmentation]({NAME}.png)", total)
    return {"accuracy": acc, "seconds": secs, "labels": args.labels, "total_seconds": total}


def plot(acc, data, args):
    fig, (ax_img, ax_acc) = figure(2, width=5.0)
    (xtr, ytr), _ = data
    aug, rng = augmentation(float(xtr.min())), np.random.default_rng(0)
    examples = [np.flatnonzero(ytr == d)[0] for d in (2, 4, 7)]
    rows = [np.concatenate([xtr[i, 0]] + [aug(xtr[i], rng)[0] for _ in range(5)], axis=1)
            for i in examples]                                  # (32, 6 * 32) each
    ax_img.imshow(np.concatenate(rows, axis=0), cmap="gray_r")
    ax_img.set(title="original, then 5 random augmentations", xticks=[], yticks=[])
    for aug_on, style, label in ((False, "o--C0", "no augmentation"),
                                 (True, "s-C1", "with augmentation")):
        means = [acc[(k, aug_on)].mean() for k in args.labels]
        ax_acc.plot(args.labels, means, style, label=label)
        for k in args.labels:
            ax_acc.scatter([k] * len(acc[(k, aug_on)]), acc[(k, aug_on)], s=10,
                           color=style[-2:], alpha=0.4)
    ax_acc.set(xscale="log", xlabel="training images per class (log)",
               ylabel="held-out accuracy (%)", title="LeNet-5, dots: seeds")
    ax_acc.minorticks_off()
    ax_acc.set_xticks(args.labels, [str(k) for k in args.labels])
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    return save_figure(fig, args, NAME, "Data augmentation on the digits")


if __name__ == "__main__":
    main()
