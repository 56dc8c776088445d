"""Claim: deeper plain networks train worse; residual networks keep improving.

The lectures (after He et al., 2016, Fig. 1 and 6): "in a plain network,
training error goes up as the network gets deeper; with ResNets it keeps
going down". Here both kinds are built from the SAME code, a stack of
blocks with and without the shortcut:

    plain:     a[l+2] = relu(z[l+2])
    residual:  a[l+2] = relu(z[l+2] + a[l])        (a projection W_s a[l] when
                                                    the shape changes)
    with z[l+1] = BN(conv3x3(a[l])), a[l+1] = relu(z[l+1]), z[l+2] = BN(conv3x3(a[l+1])).

The network is the paper's CIFAR family at a small width: a 3x3 conv,
three stages of n blocks (width w, 2w, 4w; the 2nd and 3rd start with
stride 2), global average pooling and a linear layer: 6n + 2 weight layers
(n = 1, 3, 5, 9: 8, 20, 32, 56 layers). Inputs are the digits at their
native 8x8 resolution, so the stages run at 8x8, 4x4 and 2x2.

Every depth, kind and seed is trained identically: SGD (momentum 0.9,
lr 0.1, cosine schedule, weight decay 1e-4, batch 64), same data order per
seed. The script reports the training-error curves and the final training
loss, training error and test error.
"""
import time

import numpy as np

from common import (accuracy, digits, figure, loader, mean_std, markdown_table, parse,
                    parser, report, run_tasks, save_figure, timed, train)

import minidl
from minidl import nn
from minidl.nn import init

NAME = "plain_vs_residual"


class Block(nn.Module):
    """Two 3x3 conv-BN layers, with the shortcut if ``residual``.

    (N, C_in, H, W) -> (N, C_out, H / stride, W / stride)."""

    def __init__(self, in_channels, out_channels, stride=1, residual=True):
        super().__init__()
        self.residual = residual
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut = None          # identity, or W_s when the shape changes
        if residual and (stride != 1 or in_channels != out_channels):
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, a):
        a1 = self.relu(self.bn1(self.conv1(a)))        # a[l+1]: (N, C_out, H/s, W/s)
        z2 = self.bn2(self.conv2(a1))                  # z[l+2]: (N, C_out, H/s, W/s)
        if self.residual:
            z2 = z2 + (a if self.shortcut is None else self.shortcut(a))   # + a[l]
        return self.relu(z2)                           # a[l+2]


class DeepNet(nn.Module):
    """He et al.'s CIFAR network with ``depth`` = 6n + 2 weight layers.

    (N, 1, H, W) -> (N, num_classes); ``residual=False`` drops every shortcut."""

    def __init__(self, depth, residual, width=8, num_classes=10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"DeepNet: depth must be 6n + 2 with n >= 1 (8, 14, 20, 26, "
                             f"32, ...), got {depth}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        blocks, channels = [], width
        for stage, stride in enumerate((1, 2, 2)):
            out = width * 2 ** stage
            for i in range(n):
                blocks.append(Block(channels, out, stride if i == 0 else 1, residual))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():       # He initialisation, as torchvision's ResNet
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.stem(x)               # (N, w, H, W)
        x = self.blocks(x)             # (N, 4w, H/4, W/4)
        x = self.pool(x).flatten(1)    # (N, 4w)
        return self.fc(x)              # (N, num_classes)


def run_one(depth, kind, seed, data, epochs, width, lr):
    """Train one network; returns its curves, final test error and seconds."""
    (xtr, ytr), (xte, yte) = data
    minidl.manual_seed(seed)
    model = DeepNet(depth, kind == "residual", width)
    history, seconds = timed(train, model, loader(xtr, ytr, 64, seed), epochs, lr=lr,
                             weight_decay=1e-4)
    r = {"error_curve": [h["error"] for h in history],
         "loss_curve": [h["loss"] for h in history],
         "test_error": 100 - accuracy(model, xte, yte), "seconds": seconds}
    print(f"{kind:8s} {depth:3d} layers, seed {seed}: train error {r['error_curve'][-1]:5.2f}%, "
          f"test error {r['test_error']:5.2f}% ({seconds:.0f} s)", flush=True)
    return r


def main(argv=None):
    p = parser(__doc__.split("\n")[0], seeds=2, epochs=15, jobs=True)
    p.add_argument("--depths", type=int, nargs="+", default=[8, 20, 32, 56])
    p.add_argument("--width", type=int, default=8, help="channels of the first stage")
    p.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (default 0.1)")
    args = parse(p, argv)
    if args.quick:
        args.depths, args.epochs, args.seeds = [8, 14], 2, 1
    data = digits(8)
    if args.quick:                                    # 192 training images
        (xtr, ytr), test = data
        data = (xtr[:192], ytr[:192]), test
    tasks = [(d, kind, seed, data, args.epochs, args.width, args.lr)
             for d in sorted(args.depths, reverse=True)      # the longest runs first
             for kind in ("plain", "residual") for seed in range(args.seeds)]
    t0 = time.perf_counter()
    results = run_tasks(run_one, tasks, args)
    total = time.perf_counter() - t0
    runs = {}
    for (d, kind, *_), r in zip(tasks, results):
        runs.setdefault((kind, d), []).append(r)
    result = summarize(runs, args)
    plot(result, args)
    rows = [[kind, d, mean_std(r["final_loss"], "{:.3f}"), mean_std(r["final_error"]),
             mean_std(r["test_error"]), f"{np.mean(r['seconds']):.0f}"]
            for (kind, d), r in sorted(result["runs"].items())]
    table = markdown_table(["net", "layers", "final train loss", "final train error %",
                            "test error %", "s / run"], rows)
    report(NAME, args, "Plain vs residual networks of increasing depth",
           f"{args.seeds} seed(s), {args.epochs} epochs, lr {args.lr}, width {args.width}, "
           f"8x8 digits "
           f"({len(data[0][1])} training images). Train loss and error: the last epoch's "
           f"average over its batches; mean ± std over seeds.\n\n{table}\n\n"
           f"![curves]({NAME}.png)", total)
    result["seconds"] = total
    return result


def summarize(runs, args):
    """Per (kind, depth): curves (seeds, epochs) and the final numbers per seed."""
    out = {}
    for key, rs in runs.items():
        errors = np.array([r["error_curve"] for r in rs])        # (seeds, epochs)
        losses = np.array([r["loss_curve"] for r in rs])
        out[key] = {"error_curves": errors, "loss_curves": losses,
                    "final_error": errors[:, -1], "final_loss": losses[:, -1],
                    "test_error": np.array([r["test_error"] for r in rs]),
                    "seconds": np.array([r["seconds"] for r in rs])}
    return {"depths": list(args.depths), "epochs": args.epochs, "runs": out}


def plot(result, args):
    """Training error per epoch (plain | residual) and final loss vs depth."""
    fig, (ax_p, ax_r, ax_d) = figure(3)
    epochs = np.arange(1, result["epochs"] + 1)
    colors = dict(zip(result["depths"], ("C0", "C1", "C2", "C3", "C4", "C5", "C6")))
    for ax, kind in ((ax_p, "plain"), (ax_r, "residual")):
        for d in result["depths"]:
            curves = result["runs"][(kind, d)]["error_curves"]
            ax.plot(epochs, curves.mean(0), color=colors[d], label=f"{d} layers")
            ax.fill_between(epochs, curves.min(0), curves.max(0), color=colors[d], alpha=0.2)
        ax.set_yscale("symlog", linthresh=1)
        ax.set_ylim(0, 100)
        ax.set(xlabel="epoch", ylabel="training error (%), symlog scale",
               title=f"{kind} (band: min-max over seeds)")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    for kind, style in (("plain", "o--C0"), ("residual", "s-C1")):
        final = [result["runs"][(kind, d)]["final_loss"] for d in result["depths"]]
        ax_d.errorbar(result["depths"], [f.mean() for f in final],
                      yerr=[f.std() for f in final], fmt=style, capsize=3, label=kind)
    ax_d.set(xlabel="weight layers", ylabel="final training loss", yscale="log",
             title="after the last epoch")
    ax_d.set_xticks(result["depths"])
    ax_d.grid(alpha=0.3, which="both")
    ax_d.legend()
    return save_figure(fig, args, NAME, "Plain vs residual CNNs on the 8x8 digits")


if __name__ == "__main__":
    main()
