"""Claim: with few labels, reuse a pretrained network: freeze it and train a new head.

The lectures: take a network trained on a large data set, replace its
softmax layer by one for your classes, freeze the rest and train only the
new layer; precompute the frozen part's features once to save time; with
more data, freeze fewer layers; with a lot, train everything.

Here the "large data set" is the digits 0-4 (721 training images) and the
new task is the digits 5-9 with only k labelled images per class. LeNet-5
(ReLU, max-pool) is pretrained once on 0-4; then, for each k and each draw
of the k images, these ways to get a 5-class classifier for 5-9:

    frozen trunk + new head    everything up to the 84-unit layer frozen,
                               a new Linear(84, 5) trained (trunk run each step)
    same, precomputed          the trunk's features computed once, then the
                               same head trained on them (same batches: the
                               same weights, faster)
    frozen convs, train fcs    the conv layers frozen, the three fc layers trained
    fine-tune everything       all layers trained from the pretrained weights
    from scratch               a new LeNet-5, all layers trained
    control                    a RANDOM (untrained) trunk frozen, a new head:
                               what the pretrained features add over random ones

Each is trained for the same number of SGD steps (batch 16, cosine lr;
0.05 for a head alone, 0.02 otherwise) and tested on all the test images
of 5-9 (chance: 20%).
"""
import math
import time

import numpy as np

from common import (accuracy, digits, figure, loader, markdown_table, mean_std, parse,
                    parser, per_class_subset, report, run_tasks, save_figure, timed, train)

import minidl
from minidl import models, nn
from minidl.transfer import (FrozenTrunkClassifier, freeze_prefix, precompute_features,
                             replace_head, trainable_parameters)

NAME = "transfer_learning"
METHODS = ("frozen trunk + new head", "same, precomputed features", "frozen convs, train fcs",
           "fine-tune everything", "from scratch", "control: RANDOM frozen trunk + head")
HEAD_LR = 0.05       # a linear layer on fixed features
LR = 0.02            # every method that trains conv or fc layers (0.05 diverged from
                     # scratch on some tiny training sets)


def lenet(num_classes, state=None):
    """LeNet-5 (ReLU, max-pool); with ``state``, the pretrained weights (5 outputs,
    the digits 0-4) under a new head of ``num_classes`` outputs."""
    model = models.lenet5(num_classes=5 if state else num_classes, activation="relu",
                          pool="max")
    if state:
        model.load_state_dict(state)
        replace_head(model, "classifier.4", num_classes)     # a fresh Linear(84, classes)
    return model


def trunk_of(model):
    """Everything below the last layer: (N, 1, 32, 32) -> (N, 84) features."""
    return nn.Sequential(model.features, nn.Flatten(), model.classifier[0],
                         model.classifier[1], model.classifier[2], model.classifier[3])


def pretrain(data, epochs, seed=0):
    """LeNet-5 trained on the digits 0-4; returns (state_dict, test accuracy, seconds)."""
    (xtr, ytr), (xte, yte) = data
    minidl.manual_seed(seed)
    model = lenet(5)
    _, seconds = timed(train, model, loader(xtr, ytr, 32, seed), epochs, lr=0.05)
    return model.state_dict(), accuracy(model, xte, yte), seconds


def fit_steps(model, x, y, steps, lr, seed, params=None):
    """Train for ``steps`` SGD steps of batch 16 (whole epochs, rounded up)."""
    batches = loader(x, y, 16, seed)
    train(model, batches, math.ceil(steps / len(batches)), lr, params)


def run_one(k, seed, state, target, steps):
    """All the methods on one draw of k images per class: {method: (accuracy, seconds)}."""
    (xtr, ytr), (xte, yte) = target
    pick = per_class_subset(ytr, k, seed)
    x, y = xtr[pick], ytr[pick]                           # (5k, 1, 32, 32), (5k,)
    out = {}

    def new_head():
        minidl.manual_seed(seed)
        return nn.Linear(84, 5)

    # the trunk (pretrained or random) frozen, a new head; the trunk runs at every step
    for method, trunk_state in ((METHODS[0], state), (METHODS[5], None)):
        minidl.manual_seed(seed)
        model = FrozenTrunkClassifier(trunk_of(lenet(5, trunk_state)), new_head())
        _, t = timed(fit_steps, model, x, y, steps, HEAD_LR, seed,
                     trainable_parameters(model))
        out[method] = (accuracy(model, xte, yte), t)
    # the same head on features computed once
    trunk, head = trunk_of(lenet(5, state)), new_head()
    t0 = time.perf_counter()
    fx, fy = precompute_features(trunk, loader(x, y, 256, shuffle=False)).arrays  # (5k, 84)
    fit_steps(head, fx, fy, steps, HEAD_LR, seed)
    out[METHODS[1]] = (accuracy(nn.Sequential(trunk, head), xte, yte),
                       time.perf_counter() - t0)
    # the convs frozen, the fc layers trained; everything fine-tuned; from scratch
    for method, start, frozen in ((METHODS[2], state, "features"), (METHODS[3], state, None),
                                  (METHODS[4], None, None)):
        minidl.manual_seed(seed)
        model = lenet(5, start)
        if frozen:
            freeze_prefix(model, frozen)
        _, t = timed(fit_steps, model, x, y, steps, LR, seed, trainable_parameters(model))
        out[method] = (accuracy(model, xte, yte), t)
    print(f"k = {k:3d}, draw {seed}: " + ", ".join(f"{out[m][0]:.1f}%" for m in METHODS),
          flush=True)
    return out


def main(argv=None):
    p = parser(__doc__.split("\n")[0], seeds=5, epochs=10, jobs=True)
    p.add_argument("--labels", type=int, nargs="+", default=[1, 5, 10, 20, 50],
                   help="labelled images per class of the new task")
    p.add_argument("--steps", type=int, default=150, help="SGD steps on the new task")
    args = parse(p, argv)
    if args.quick:
        args.labels, args.seeds, args.epochs, args.steps = [5], 1, 2, 20
    source, target = digits(32, range(5)), digits(32, range(5, 10))
    t0 = time.perf_counter()
    state, source_acc, pretrain_s = pretrain(source, args.epochs)
    tasks = [(k, seed, state, target, args.steps) for k in args.labels
             for seed in range(args.seeds)]
    results = run_tasks(run_one, tasks, args)
    total = time.perf_counter() - t0
    acc = {(m, k): np.array([r[m][0] for (kk, *_), r in zip(tasks, results) if kk == k])
           for m in METHODS for k in args.labels}
    secs = {m: np.array([r[m][1] for (kk, *_), r in zip(tasks, results)
                         if kk == max(args.labels)]) for m in METHODS}
    rows = [[m] + [mean_std(acc[(m, k)]) for k in args.labels] + [f"{secs[m].mean():.2f}"]
            for m in METHODS]
    table = markdown_table(["method"] + [f"k = {k}" for k in args.labels]
                           + [f"train s (k = {max(args.labels)})"], rows)
    plot(acc, secs, args)
    report(NAME, args, "Transfer learning: digits 0-4 -> digits 5-9 with k labels per class",
           f"LeNet-5 pretrained on the digits 0-4 ({len(source[0][1])} images, {args.epochs} "
           f"epochs, {pretrain_s:.0f} s): {source_acc:.1f}% on their test images. New task: "
           f"5-9, k labelled images per class, {args.steps} SGD steps of batch 16; test "
           f"accuracy (%) on the {len(target[1][1])} test images of 5-9 (chance 20%), mean ± "
           f"std over {args.seeds} draws of the k images.\n\n{table}\n\n"
           f"![transfer]({NAME}.png)", total)
    return {"accuracy": acc, "seconds": secs, "source_accuracy": source_acc,
            "labels": args.labels, "total_seconds": total}


def plot(acc, secs, args):
    fig, (ax_a, ax_t) = figure(2, width=5.2)
    for i, m in enumerate(METHODS):
        means = [acc[(m, k)].mean() for k in args.labels]
        stds = [acc[(m, k)].std() for k in args.labels]
        ax_a.errorbar(args.labels, means, yerr=stds, fmt={1: "x:", 5: "^--"}.get(i, "o-"),
                      capsize=3, label=m, color=f"C{i}")
    ax_a.axhline(20, color="grey", ls=":", lw=1)
    ax_a.text(args.labels[0], 21, "chance", color="grey")
    ax_a.set(xscale="log", xlabel="labelled images per class (log)",
             ylabel="test accuracy on 5-9 (%)",
             title="accuracy, mean ± std over draws\n(colours: the methods on the right)")
    ax_a.minorticks_off()
    ax_a.set_xticks(args.labels, [str(k) for k in args.labels])
    bars = ax_t.barh(list(METHODS)[::-1], [secs[m].mean() for m in METHODS][::-1],
                     color=[f"C{i}" for i in range(len(METHODS))][::-1])
    ax_t.bar_label(bars, fmt="%.2f s")
    ax_t.set(xlabel=f"training seconds, k = {max(args.labels)}", title="time")
    ax_t.margins(x=0.25)
    for ax in (ax_a, ax_t):
        ax.grid(alpha=0.3)
    return save_figure(fig, args, NAME, "Transfer learning on the digits")


if __name__ == "__main__":
    main()
