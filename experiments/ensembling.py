"""Claim: averaging several networks, or several crops of each test image, helps.

The lectures' tips for benchmarks and competitions:

* ensembling: train 3-15 networks independently and average their outputs,
      p(y | x) = 1/M sum_m softmax(f_m(x));
* multi-crop at test time: run the classifier on several versions of each
  test image (10-crop: the centre and the 4 corners, and their mirror
  images) and average the results;

both at M (or 10) times the inference cost.

Here: M LeNet-5 (ReLU, max-pool) trained independently (each its own seed:
initialisation and data order) on the digits at 36x36, on random 32x32
crops, as AlexNet trained on random 224 crops of 256 images. At test time
(the 360 held-out digits at 36x36): the centre 32x32 crop, the ten crops of
``minidl.ensemble.ten_crop``, and the five crops without their mirror
images (a mirrored digit is another symbol: the networks never saw one).
"""
import math
import time

import numpy as np

from common import (figure, loader, markdown_table, median_seconds, parse, parser,
                    per_class_subset, report, run_tasks, save_figure, timed, train)

import minidl
from minidl import models
from minidl.data import load_digits, transforms as T
from minidl.ensemble import predict_ten_crop, ten_crop
from minidl.ops.loss import softmax
from minidl.tensor import Tensor, no_grad

NAME = "ensembling"
SIZE, CROP = 36, 32                 # test images and the crops the networks take


def digits36():
    """The digits at 36x36, standardised with the training split's mean and std."""
    (xtr, ytr), (xte, yte) = load_digits(SIZE, "train"), load_digits(SIZE, "test")
    mean, std = xtr.mean(), xtr.std()
    return ((xtr - mean) / std, ytr), ((xte - mean) / std, yte)


def train_member(seed, data, pick, steps):
    """One LeNet-5 trained on random 32x32 crops of the images ``pick`` for
    ``steps`` SGD steps (whole epochs); returns (state_dict, seconds)."""
    (xtr, ytr), _ = data
    minidl.manual_seed(seed)
    model = models.lenet5(activation="relu", pool="max")
    batches = loader(xtr[pick], ytr[pick], 32, seed, transform=T.RandomCrop(CROP))
    _, seconds = timed(train, model, batches, math.ceil(steps / len(batches)), lr=0.02)
    print(f"{len(pick)} images, member {seed}: trained in {seconds:.0f} s", flush=True)
    return model.state_dict(), seconds


def view_probabilities(model, views):
    """Softmax outputs of ``model`` for every view: (V, N, classes) NumPy array.
    ``views`` is (V, N, C, h, w), e.g. the ten crops."""
    model.eval()
    with no_grad():
        return np.stack([softmax(model(Tensor(v)), 1).numpy() for v in views.data])


def main(argv=None):
    p = parser(__doc__.split("\n")[0], seeds=5, jobs=True)
    p.add_argument("--per-class", type=int, nargs="+", default=[20, 0],
                   help="training images per class (0: all 1,437 images)")
    p.add_argument("--steps", type=int, default=700, help="SGD steps of batch 32 per network")
    args = parse(p, argv)
    if args.quick:
        args.seeds, args.per_class, args.steps = 2, [10], 40
    data = digits36()
    (_, ytr), (xte, yte) = data
    views = ten_crop(xte, CROP)                                # (10, N, 1, 32, 32)
    t0 = time.perf_counter()
    results = {}
    for k in args.per_class:
        pick = per_class_subset(ytr, k, seed=0) if k else np.arange(len(ytr))
        trained = run_tasks(train_member, [(s, data, pick, args.steps)
                                           for s in range(args.seeds)], args)
        members = [load_lenet(state) for state, _ in trained]
        probs = np.stack([view_probabilities(m, views) for m in members])  # (M, 10, N, 10)
        results[len(pick)] = dict(evaluate_all(probs, yte), members=members,
                                  train_seconds=[s for _, s in trained])
    costs = inference_costs(members, xte, views, args)
    total = time.perf_counter() - t0
    write(results, costs, args, total)
    return {"results": results, "costs": costs, "xte": xte, "seconds": total}


def load_lenet(state):
    model = models.lenet5(activation="relu", pool="max")
    model.load_state_dict(state)
    return model.eval()


CENTRE = 4                      # ten_crop's order: 4 corners, the centre, then mirrored


def evaluate_all(probs, y):
    """Accuracies (%) from the probabilities (members M, views 10, N, classes)."""
    def acc(p):                                                # p: (N, classes)
        return 100 * float((p.argmax(1) == y).mean())

    M = probs.shape[0]
    return {
        "single": [acc(probs[m, CENTRE]) for m in range(M)],
        "ten_crop": [acc(probs[m].mean(0)) for m in range(M)],
        "five_crop": [acc(probs[m, :5].mean(0)) for m in range(M)],
        "ensemble": [acc(probs[:k, CENTRE].mean(0)) for k in range(1, M + 1)],
        "ensemble_five_crop": acc(probs[:, :5].mean((0, 1))),
        "ensemble_ten_crop": acc(probs.mean((0, 1))),
    }


def inference_costs(members, xte, views, args):
    """Median seconds to classify the test set, per method."""
    repeats = 1 if args.quick else 3
    single = members[0]
    centre = views.data[CENTRE]

    def ensemble(batch):
        return [view_probabilities(m, batch) for m in members]

    return {
        "single": median_seconds(lambda: view_probabilities(single, Tensor(centre[None])),
                                 repeats),
        "five_crop": median_seconds(lambda: view_probabilities(single, Tensor(views.data[:5])),
                                    repeats),
        "ten_crop": median_seconds(lambda: predict_ten_crop(single, Tensor(xte), CROP),
                                   repeats),
        "ensemble": median_seconds(lambda: ensemble(Tensor(centre[None])), repeats),
        "ensemble_five_crop": median_seconds(lambda: ensemble(Tensor(views.data[:5])),
                                             repeats),
        "ensemble_ten_crop": median_seconds(lambda: ensemble(views), repeats),
    }


def write(results, c, args, seconds):
    M = args.seeds
    sizes = list(results)
    labels = [
        ("one network, centre crop: mean of the members", 1, "single",
         lambda r: np.mean(r["single"])),
        ("one network, centre crop: best member", 1, None, lambda r: np.max(r["single"])),
        ("one network, centre crop: worst member", 1, None, lambda r: np.min(r["single"])),
        (f"ensemble of {M}, centre crop", M, "ensemble", lambda r: r["ensemble"][-1]),
        ("one network, 5 crops (no mirrors): mean", 5, "five_crop",
         lambda r: np.mean(r["five_crop"])),
        ("one network, ten-crop (with mirrors): mean", 10, "ten_crop",
         lambda r: np.mean(r["ten_crop"])),
        (f"ensemble of {M}, 5 crops", 5 * M, "ensemble_five_crop",
         lambda r: r["ensemble_five_crop"]),
        (f"ensemble of {M}, ten-crop", 10 * M, "ensemble_ten_crop",
         lambda r: r["ensemble_ten_crop"]),
    ]
    rows = [[name] + [f"{value(results[n]):.1f}" for n in sizes]
            + [passes, f"{1e3 * c[key]:.0f}" if key else ""]
            for name, passes, key, value in labels]
    table = markdown_table(["prediction"] + [f"accuracy %, {n} training images" for n in sizes]
                           + ["forward passes per image", "ms for the 360 test images"], rows)
    per_member = []
    for n in sizes:
        r = results[n]
        per_member.append(markdown_table(
            [f"{n} training images, member"] + [str(m) for m in range(M)],
            [["centre crop %"] + [f"{a:.1f}" for a in r["single"]],
             ["5 crops %"] + [f"{a:.1f}" for a in r["five_crop"]],
             ["ten-crop %"] + [f"{a:.1f}" for a in r["ten_crop"]],
             ["ensemble of members 0..m %"] + [f"{a:.1f}" for a in r["ensemble"]]]))
    train_s = np.mean([s for r in results.values() for s in r["train_seconds"]])
    plot(results, c, args)
    report(NAME, args, "Ensembling and multi-crop at test time",
           f"{M} LeNet-5 per training set, each {args.steps} SGD steps (batch 32) on random "
           f"32x32 crops of the 36x36 digits ({train_s:.0f} s per network); tested on the 360 "
           f"held-out digits (one image = 0.28 points). Inference times: the networks of the "
           f"last training set.\n\n{table}\n\nPer member:\n\n"
           + "\n\n".join(per_member) + f"\n\n![ensembling]({NAME}.png)", seconds)


def plot(results, c, args):
    fig, axes = figure(len(results) + 1, width=4.4)
    M = args.seeds
    sizes = np.arange(1, M + 1)
    for i, (ax_e, (n, r)) in enumerate(zip(axes, results.items())):
        color = f"C{i}"
        ax_e.plot(sizes, r["ensemble"], "s-", color=color, label="ensemble of members 1..m")
        ax_e.scatter(sizes + 0.12, r["single"], color="k", marker="x", label="member m alone")
        ax_e.axhline(np.mean(r["single"]), color="grey", ls=":", label="mean member")
        ax_e.set(xlabel="networks m", ylabel="test accuracy (%)",
                 title=f"ensembling, {n} training images")
        ax_e.set_xticks(sizes)
        ax_e.margins(y=0.5)
        ax_e.legend(fontsize=8, loc="best")
        points = [(c["single"], np.mean(r["single"]), "1 net"),
                  (c["five_crop"], np.mean(r["five_crop"]), "1 net, 5 crops"),
                  (c["ten_crop"], np.mean(r["ten_crop"]), "1 net, 10 crops"),
                  (c["ensemble"], r["ensemble"][-1], f"{M} nets"),
                  (c["ensemble_five_crop"], r["ensemble_five_crop"], f"{M} nets, 5 crops"),
                  (c["ensemble_ten_crop"], r["ensemble_ten_crop"], f"{M} nets, 10 crops")]
        ax_c = axes[-1]
        ax_c.scatter([1e3 * t for t, _, _ in points], [a for _, a, _ in points], color=color,
                     label=f"{n} training images")
        for t, a, label in points:
            ax_c.annotate(label, (1e3 * t, a), textcoords="offset points", xytext=(4, 4),
                          fontsize=7)
    ax_c.set(xscale="log", xlabel="ms to classify the 360 test images (log)",
             ylabel="test accuracy (%)", title="accuracy vs inference cost\n(1 net: mean member)")
    ax_c.margins(x=0.3, y=0.1)
    ax_c.legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    return save_figure(fig, args, NAME, "Ensembling and multi-crop on the digits")


if __name__ == "__main__":
    main()
