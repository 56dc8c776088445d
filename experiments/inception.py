"""Claim: 1x1 bottlenecks make the Inception module affordable.

The Inception module runs a 1x1, a 3x3 and a 5x5 convolution and a 3x3
max-pool side by side ("same" padding, stride 1) on one input and
concatenates their outputs along the channels. On GoogLeNet's inception
(3a) input, 28x28x192:

    naive:       1x1 conv 64 | 3x3 conv 128 | 5x5 conv 32 | 3x3 max-pool
                 -> 64 + 128 + 32 + 192 = 416 channels (the pool keeps all 192)
    bottleneck:  1x1 conv 64 | 1x1 96 -> 3x3 128 | 1x1 16 -> 5x5 32 |
                 3x3 max-pool -> 1x1 32        -> 256 channels
                 (minidl.models.googlenet.Inception with the paper's 3a numbers)

Every conv is followed by a ReLU. Parameters and MACs come from
``minidl.summary``, per branch too; the time is the median wall time of
the forward pass (and of forward + backward, with the gradient of the input
as inside a network) on a batch of random inputs.
"""
import time

import numpy as np

from common import figure, markdown_table, measure_module, parse, parser, ratio_row, \
    report, save_figure, threads

import minidl
from minidl import nn
from minidl.models.googlenet import Inception
from minidl.ops.math import cat

NAME = "inception"
SHAPE = (192, 28, 28)                           # (C, H, W): the input of inception (3a)


class NaiveInception(nn.Module):
    """1x1, 3x3, 5x5 convs (+ ReLU) and a 3x3 max-pool on the same input,
    concatenated: (N, C, H, W) -> (N, c1 + c3 + c5 + C, H, W)."""

    def __init__(self, in_channels, c1, c3, c5):
        super().__init__()
        self.branch1 = nn.Sequential(nn.Conv2d(in_channels, c1, 1), nn.ReLU())
        self.branch2 = nn.Sequential(nn.Conv2d(in_channels, c3, 3, padding=1), nn.ReLU())
        self.branch3 = nn.Sequential(nn.Conv2d(in_channels, c5, 5, padding=2), nn.ReLU())
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1)

    def forward(self, x):
        return cat([self.branch1(x),       # (N, c1, H, W)
                    self.branch2(x),       # (N, c3, H, W)
                    self.branch3(x),       # (N, c5, H, W)
                    self.branch4(x)], 1)   # (N, C, H, W)  -> (N, c1 + c3 + c5 + C, H, W)


def modules():
    minidl.manual_seed(0)
    return {"naive": NaiveInception(192, 64, 128, 32),
            "with 1x1 bottlenecks": Inception(192, 64, 96, 128, 16, 32, 32,
                                              batch_norm=False, five=5)}


def branch_macs(s):
    """{branch name: MACs} from a summary's rows (names "branch1...", ...)."""
    out = {}
    for row in s.rows:
        branch = row.name.split(".")[0]
        out[branch] = out.get(branch, 0) + row.macs
    return out


def measure(model, batch, repeats):
    r = measure_module(model, SHAPE, batch, repeats)
    r["branches"] = branch_macs(r["summary"])
    return r


BRANCHES = {"branch1": "1x1", "branch2": "3x3 (after its 1x1)",
            "branch3": "5x5 (after its 1x1)", "branch4": "max-pool (then 1x1)"}


def main(argv=None):
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=16, help="inputs per timed call")
    p.add_argument("--repeats", type=int, default=5, help="timed calls (median)")
    args = parse(p, argv)
    if args.quick:
        args.batch, args.repeats = 1, 1
    t0 = time.perf_counter()
    with threads(args.threads):
        results = {name: measure(m, args.batch, args.repeats) for name, m in modules().items()}
    total = time.perf_counter() - t0
    naive, bottle = results.values()
    rows = [[name, f"{r['output'][1:]}", f"{r['params']:,}", f"{r['macs']:,}",
             f"{1e3 * r['forward_s']:.0f}", f"{1e3 * r['forward_backward_s']:.0f}"]
            for name, r in results.items()]
    rows.append(ratio_row("ratio naive / bottleneck", naive, bottle))
    table = markdown_table(["module", "output (C, H, W)", "params", "MACs per image",
                            f"forward ms (N={args.batch})", f"fwd+bwd ms (N={args.batch})"],
                           rows)
    per_branch = markdown_table(["branch", "naive MACs", "bottleneck MACs"],
                                [[BRANCHES[b], f"{naive['branches'].get(b, 0):,}",
                                  f"{bottle['branches'].get(b, 0):,}"] for b in BRANCHES])
    plot(results, args)
    report(NAME, args, "Inception module: naive vs with 1x1 bottlenecks",
           f"Input 28x28x192 (GoogLeNet's inception 3a). MACs from `minidl.summary`; "
           f"times are medians of {args.repeats} calls on a batch of {args.batch}.\n\n"
           f"{table}\n\nMACs per branch:\n\n{per_branch}\n\n![cost]({NAME}.png)", total)
    return {"results": results, "seconds": total}


def plot(results, args):
    fig, (ax_m, ax_t) = figure(2, width=4.4)
    names = list(results)
    bottom = np.zeros(len(names))
    for i, (b, label) in enumerate(BRANCHES.items()):
        macs = np.array([results[n]["branches"].get(b, 0) / 1e6 for n in names])
        ax_m.bar(names, macs, bottom=bottom, label=label, color=f"C{i}")
        bottom += macs
    for i, total in enumerate(bottom):
        ax_m.text(i, total, f"{total:.0f} M", ha="center", va="bottom")
    ax_m.set_ylim(0, 1.15 * bottom.max())
    ax_m.set(ylabel="million MACs per image", title="multiply-accumulates by branch")
    ax_m.legend(fontsize=8)
    xs, width = np.arange(len(names)), 0.38
    for shift, key, label, hatch in ((-width / 2, "forward_s", "forward", ""),
                                     (width / 2, "forward_backward_s", "forward + backward",
                                      "//")):
        bars = ax_t.bar(xs + shift, [1e3 * results[n][key] for n in names], width,
                        color="C7", hatch=hatch, edgecolor="white", label=label)
        ax_t.bar_label(bars, fmt="%.0f")
    ax_t.set_xticks(xs, names)
    ax_t.set(ylabel=f"ms per batch of {args.batch}", title="measured time (median)")
    ax_t.legend()
    ax_t.margins(y=0.15)
    for ax in (ax_m, ax_t):
        ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, args, NAME, "Inception module on 28x28x192: naive vs bottleneck")


if __name__ == "__main__":
    main()
