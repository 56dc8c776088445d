"""Claim: a 1x1 "bottleneck" convolution cuts the cost of a 5x5 conv tenfold.

The lectures' example (Inception motivation): from a 28x28x192 volume to
28x28x32,

    direct:      5x5 conv, 32 filters ("same"):
                 28*28*32 * 5*5*192                       = 120,422,400 MACs
    bottleneck:  1x1 conv to 16 channels, ReLU, then the 5x5 conv to 32:
                 28*28*16 * 192  +  28*28*32 * 5*5*16     =  12,443,648 MACs

Both give a (N, 32, 28, 28) output. MACs and parameters come from
``minidl.summary``; the time is the median wall time of the forward pass
(and of forward + backward, with the gradient of the input as inside a
network) on a batch of random 28x28x192 volumes.
"""
import time

import numpy as np

from common import figure, markdown_table, measure_module, parse, parser, ratio_row, \
    report, save_figure, threads

import minidl
from minidl import nn

NAME = "one_by_one_conv"
SHAPE = (192, 28, 28)                                  # (C, H, W) of the input volume


def networks():
    """{"direct": 5x5 conv 192->32, "bottleneck": 1x1 conv 192->16, ReLU, 5x5 16->32}."""
    minidl.manual_seed(0)
    return {"direct 5x5": nn.Conv2d(192, 32, 5, padding=2),
            "1x1 to 16, then 5x5": nn.Sequential(nn.Conv2d(192, 16, 1), nn.ReLU(),
                                                 nn.Conv2d(16, 32, 5, padding=2))}


def main(argv=None):
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=16, help="volumes per timed call")
    p.add_argument("--repeats", type=int, default=7, help="timed calls (median)")
    args = parse(p, argv)
    if args.quick:
        args.batch, args.repeats = 2, 2
    t0 = time.perf_counter()
    with threads(args.threads):
        results = {name: measure_module(m, SHAPE, args.batch, args.repeats)
                   for name, m in networks().items()}
    total = time.perf_counter() - t0
    direct, bottle = results.values()
    rows = [[name, f"{r['output']}", f"{r['params']:,}", f"{r['macs']:,}",
             f"{1e3 * r['forward_s']:.1f}", f"{1e3 * r['forward_backward_s']:.1f}"]
            for name, r in results.items()]
    rows.append(ratio_row("ratio direct / bottleneck", direct, bottle))
    table = markdown_table(["path", "output (batch of N)", "params", "MACs per image",
                            f"forward ms (N={args.batch})", f"fwd+bwd ms (N={args.batch})"],
                           rows)
    plot(results, args)
    report(NAME, args, "1x1 convolutions: a 5x5 conv from 28x28x192 to 32 channels",
           f"MACs from `minidl.summary` (per 28x28x192 volume); times are medians of "
           f"{args.repeats} calls on a batch of {args.batch}.\n\n{table}\n\n"
           f"![cost]({NAME}.png)", total)
    return {"results": results, "seconds": total}


def plot(results, args):
    fig, (ax_m, ax_t) = figure(2, width=4.4)
    names, colors = list(results), ["C3", "C2"]
    bars = ax_m.bar(names, [results[n]["macs"] / 1e6 for n in names], color=colors)
    ax_m.bar_label(bars, fmt="%.1f M")
    ax_m.set(ylabel="million MACs per image", title="multiply-accumulates (summary)")
    xs, width = np.arange(len(names)), 0.38
    for shift, key, label, hatch in ((-width / 2, "forward_s", "forward", ""),
                                     (width / 2, "forward_backward_s", "forward + backward",
                                      "//")):
        bars = ax_t.bar(xs + shift, [1e3 * results[n][key] for n in names], width,
                        color=colors, hatch=hatch, edgecolor="white", label=label)
        ax_t.bar_label(bars, fmt="%.0f")
    ax_t.set_xticks(xs, names)
    ax_t.set(ylabel=f"ms per batch of {args.batch}", title="measured time (median)")
    legend = ax_t.legend()
    for patch in legend.get_patches():
        patch.set_facecolor("grey")
    for ax in (ax_m, ax_t):
        ax.margins(y=0.15)
        ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, args, NAME, "5x5 conv 28x28x192 -> 28x28x32: direct vs bottleneck")


if __name__ == "__main__":
    main()
