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
import time

import numpy as np

from common import (figure, loader, markdown_table, median_seconds, parse, parser,
                    report, run_tasks, save_figure, timed, train)

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


def train_member(seed, data, epochs, n_train):
    """One LeNet-5 trained on random 32x32 crops; returns (state_dict, seconds)."""
    (xtr, ytr), _ = data
    minidl.manual_seed(seed)
    model = models.lenet5(activation="relu", pool="max")
    batches = loader(xtr[:n_train], ytr[:n_train], 32, seed, transform=T.RandomCrop(CROP))
    _, seconds = timed(train, model, batches, epochs, lr=0.02)
    print(f"member {seed}: trained in {seconds:.0f} s", flush=True)
    return model.state_dict(), seconds


def view_probabilities(model, views):
    """Softmax outputs of ``model`` for every view: (V, N, classes) NumPy array.
    ``views`` is (V, N, C, h, w), e.g. the ten crops."""
    model.eval()
    with no_grad():
        return np.stack([softmax(model(Tensor(v)), 1).numpy() for v in views.data])


def main(argv=None):
    p = parser(__doc__.split("\n")[0], seeds=5, epochs=15, jobs=True)
    args = parse(p, argv)
    if args.quick:
        args.seeds, args.epochs = 2, 3
    data = digits36()
    n_train = 300 if args.quick else len(data[0][1])
    t0 = time.perf_counter()
    trained = run_tasks(train_member, [(s, data, args.epochs, n_train)
                                       for s in range(args.seeds)], args)
    members = []
    for state, _ in trained:
        m = models.lenet5(activation="relu", pool="max")
        m.load_state_dict(state)
        members.append(m.eval())
    xte, yte = data[1]
    views = ten_crop(xte, CROP)                                # (10, N, 1, 32, 32)
    probs = np.stack([view_probabilities(m, views) for m in members])   # (M, 10, N, 10)
    result = evaluate_all(probs, yte)
    result["costs"] = inference_costs(members, xte, views, args)
    result["train_seconds"] = [s for _, s in trained]
    result["seconds"] = time.perf_counter() - t0
    result["members"], result["xte"] = members, xte
    write(result, args)
    return result


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


def write(r, args):
    M = args.seeds
    single = np.array(r["single"])
    c = r["costs"]
    rows = [
        ["one network, centre crop: mean of the members", f"{single.mean():.1f}", 1,
         f"{1e3 * c['single']:.0f}"],
        ["one network, centre crop: best member", f"{single.max():.1f}", 1, ""],
        ["one network, centre crop: worst member", f"{single.min():.1f}", 1, ""],
        [f"ensemble of {M}, centre crop", f"{r['ensemble'][-1]:.1f}", M,
         f"{1e3 * c['ensemble']:.0f}"],
        ["one network, 5 crops (no mirrors): mean", f"{np.mean(r['five_crop']):.1f}", 5,
         f"{1e3 * c['five_crop']:.0f}"],
        ["one network, ten-crop (with mirrors): mean", f"{np.mean(r['ten_crop']):.1f}", 10,
         f"{1e3 * c['ten_crop']:.0f}"],
        [f"ensemble of {M}, 5 crops", f"{r['ensemble_five_crop']:.1f}", 5 * M,
         f"{1e3 * c['ensemble_five_crop']:.0f}"],
        [f"ensemble of {M}, ten-crop", f"{r['ensemble_ten_crop']:.1f}", 10 * M,
         f"{1e3 * c['ensemble_ten_crop']:.0f}"],
    ]
    table = markdown_table(["prediction", "test accuracy %", "forward passes per image",
                            "ms for the 360 test images"], rows)
    members = markdown_table(["member (seed)"] + [str(m) for m in range(M)],
                             [["centre crop %"] + [f"{a:.1f}" for a in r["single"]],
                              ["5 crops %"] + [f"{a:.1f}" for a in r["five_crop"]],
                              ["ten-crop %"] + [f"{a:.1f}" for a in r["ten_crop"]],
                              ["ensemble of members 0..m %"]
                              + [f"{a:.1f}" for a in r["ensemble"]]])
    plot(r, args)
    report(NAME, args, "Ensembling and multi-crop at test time",
           f"{M} LeNet-5, {args.epochs} epochs each on random 32x32 crops of the 36x36 digits "
           f"({np.mean(r['train_seconds']):.0f} s per network); 360 held-out digits (one "
           f"image = 0.28 points).\n\n{table}\n\nPer member:\n\n{members}\n\n"
           f"![ensembling]({NAME}.png)", r["seconds"])


def plot(r, args):
    fig, (ax_e, ax_c) = figure(2, width=5.0)
    M = args.seeds
    sizes = np.arange(1, M + 1)
    ax_e.plot(sizes, r["ensemble"], "s-C1", label="ensemble of members 0..m-1")
    ax_e.scatter(sizes, r["single"], color="C0", label="each member alone")
    ax_e.axhline(np.max(r["single"]), color="C0", ls=":", label="best member")
    ax_e.set(xlabel="networks averaged", ylabel="test accuracy (%)",
             title="ensembling (centre crop)")
    ax_e.set_xticks(sizes)
    ax_e.legend(fontsize=8)
    c = r["costs"]
    points = [("1 net", c["single"], np.mean(r["single"])),
              ("1 net, 5 crops", c["five_crop"], np.mean(r["five_crop"])),
              ("1 net, 10 crops", c["ten_crop"], np.mean(r["ten_crop"])),
              (f"{M} nets", c["ensemble"], r["ensemble"][-1]),
              (f"{M} nets, 5 crops", c["ensemble_five_crop"], r["ensemble_five_crop"])]
    for i, (label, seconds, acc) in enumerate(points):
        ax_c.scatter(1e3 * seconds, acc, color=f"C{i}", s=40)
        ax_c.annotate(label, (1e3 * seconds, acc), textcoords="offset points",
                      xytext=(5, 5), fontsize=8)
    ax_c.set(xscale="log", xlabel="ms to classify the 360 test images (log)",
             ylabel="test accuracy (%)", title="accuracy vs inference cost (1 net: mean)")
    ax_c.margins(x=0.3, y=0.2)
    for ax in (ax_e, ax_c):
        ax.grid(alpha=0.3, which="both")
    return save_figure(fig, args, NAME, "Ensembling and multi-crop on the digits")


if __name__ == "__main__":
    main()
