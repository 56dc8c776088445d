"""Claim: a residual block can fall back to the identity, and gradients reach
the first layer of a deep residual net.

1. The lectures' argument: in a residual block

       a[l+2] = g(z[l+2] + a[l]),   z[l+2] = W[l+2] a[l+1] + b[l+2],

   if W[l+2] = 0 and b[l+2] = 0 (weight decay pushes them that way), then
   a[l+2] = g(a[l]) = a[l], because a[l] came out of a ReLU and is >= 0. So
   adding a block cannot make the function worse: it can learn to do
   nothing. A plain block with W[l+2] = 0 outputs g(0) = 0 instead and
   loses its input. Shown on minidl's own ``BasicBlock`` (W = conv2 and
   b = bn2's shift, BatchNorm in training and in eval mode) with the
   digits' real post-ReLU activations, and as the weights shrink to 0.

2. Gradients: the norm of dLoss/dW of the first convolution of the plain
   and residual networks of ``plain_vs_residual.py`` at initialisation, on
   one batch of digits, for increasing depth; and, for the deepest pair, the
   gradient norm of every convolution along the depth.
"""
import time

import numpy as np

from common import digits, figure, markdown_table, mean_std, parse, parser, report, \
    save_figure, threads
from plain_vs_residual import Block, DeepNet

import minidl
from minidl import nn
from minidl.models import BasicBlock
from minidl.ops.loss import cross_entropy
from minidl.tensor import Tensor, no_grad

NAME = "why_resnets_work"
STYLES = {"plain": "o--C0", "residual": "s-C1"}


# ----------------------------------------------------------------------------
# 1. the identity
# ----------------------------------------------------------------------------
def post_relu_activations(channels, n=16):
    """Real a[l] >= 0: the digits (8x8) through a 3x3 conv + ReLU, (n, C, 8, 8)."""
    (x, _), _ = digits(8)
    minidl.manual_seed(0)
    stem = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU())
    with no_grad():
        return stem(Tensor(x[:n])).data          # (n, C, 8, 8), every entry >= 0


def zero_last_layer(block, scale=0.0):
    """Multiply W[l+2] (conv2) by ``scale`` and set b[l+2] (bn2's shift) to 0."""
    block.conv2.weight.data *= scale
    block.bn2.bias.data[...] = 0
    return block


def identity_gap(block, a, training):
    """max |block(a) - a|: 0 when the block computes the identity."""
    block.train(training)
    with no_grad():
        out = block(Tensor(a)).data
    return float(np.abs(out - a).max())


def identity_table(channels=8, seed=0):
    """max |a[l+2] - a[l]| for the cases of the argument, in train and eval mode."""
    a = post_relu_activations(channels)                       # (16, C, 8, 8) >= 0
    minidl.manual_seed(seed)
    signed = np.random.default_rng(seed).standard_normal(a.shape).astype(np.float32)
    cases = [
        ("residual block, W[l+2] = 0, b[l+2] = 0", BasicBlock(channels, channels), a, True),
        ("residual block, W[l+2] = 0, b[l+2] = 0, input < 0 too",
         BasicBlock(channels, channels), signed, True),
        ("plain block, W[l+2] = 0, b[l+2] = 0", Block(channels, channels, residual=False),
         a, True),
        ("residual block, initial weights", BasicBlock(channels, channels), a, False),
    ]
    rows = []
    for name, block, x, zero in cases:
        if zero:
            zero_last_layer(block)
        rows.append((name, identity_gap(block, x, True), identity_gap(block, x, False),
                     float(np.abs(x).max())))
    return rows


def shrinking_weights(channels=8, scales=np.linspace(0, 1, 11)):
    """||a[l+2] - a[l]|| / ||a[l]|| as W[l+2] shrinks (eval mode), residual and plain."""
    a = post_relu_activations(channels)
    curves = {}
    for kind, make in (("residual", lambda: BasicBlock(channels, channels)),
                       ("plain", lambda: Block(channels, channels, residual=False))):
        gaps = []
        for s in scales:
            minidl.manual_seed(1)
            block = zero_last_layer(make(), s).eval()
            with no_grad():
                out = block(Tensor(a)).data
            gaps.append(float(np.linalg.norm(out - a) / np.linalg.norm(a)))
        curves[kind] = gaps
    return np.asarray(scales), curves


# ----------------------------------------------------------------------------
# 2. gradients at the first layer
# ----------------------------------------------------------------------------
def conv_gradient_norms(depth, residual, seed, x, y, width):
    """||dLoss/dW|| of every 3x3 conv along the main path (stem first), at init."""
    minidl.manual_seed(seed)
    model = DeepNet(depth, residual, width)
    model.train()
    cross_entropy(model(Tensor(x)), Tensor(y)).backward()
    convs = [model.stem[0]] + [conv for b in model.blocks for conv in (b.conv1, b.conv2)]
    return np.array([float(np.linalg.norm(c.weight.grad.data)) for c in convs])


def main(argv=None):
    p = parser(__doc__.split("\n")[0], seeds=5)
    p.add_argument("--depths", type=int, nargs="+", default=[8, 20, 32, 56, 110])
    p.add_argument("--width", type=int, default=8)
    args = parse(p, argv)
    if args.quick:
        args.depths, args.seeds = [8, 20], 2
    t0 = time.perf_counter()
    with threads(args.threads):
        rows = identity_table()
        scales, shrink = shrinking_weights()
        (x, y), _ = digits(8)
        x, y = x[:128], y[:128]                                # one batch
        norms = {(kind, d): [conv_gradient_norms(d, kind == "residual", s, x, y, args.width)
                             for s in range(args.seeds)]
                 for d in args.depths for kind in ("plain", "residual")}
    first = {key: np.array([n[0] for n in v]) for key, v in norms.items()}
    total = time.perf_counter() - t0

    t1 = markdown_table(["case", "max abs(a[l+2] - a[l]), BN train mode", "same, eval mode",
                         "max abs(a[l])"],
                        [[n, f"{tr:.2e}", f"{ev:.2e}", f"{m:.2f}"] for n, tr, ev, m in rows])
    t2 = markdown_table(["layers", "plain: norm of dL/dW1", "residual: norm of dL/dW1",
                         "plain / residual"],
                        [[d, mean_std(first[("plain", d)], "{:.3g}"),
                          mean_std(first[("residual", d)], "{:.3g}"),
                          f"{first[('plain', d)].mean() / first[('residual', d)].mean():.3g}"]
                         for d in args.depths])
    plot(scales, shrink, norms, first, args)
    report(NAME, args, "Why ResNets work: the identity block and the gradient at layer 1",
           f"**1. The identity.** minidl's `BasicBlock` ({8} channels) on real post-ReLU "
           f"activations (the digits through a 3x3 conv and a ReLU):\n\n{t1}\n\n"
           f"**2. Gradient at the first layer** at initialisation (He init, BatchNorm in "
           f"training mode), one batch of 128 digits, width {args.width}, mean ± std over "
           f"{args.seeds} seeds:\n\n{t2}\n\n![identity and gradients]({NAME}.png)", total)
    return {"identity": rows, "scales": scales, "shrinking": shrink, "first_layer": first,
            "norms": norms, "seconds": total}


def plot(scales, shrink, norms, first, args):
    fig, (ax_s, ax_d, ax_l) = figure(3)
    for kind, style in STYLES.items():
        ax_s.plot(scales, shrink[kind], style, label=f"{kind} block")
    ax_s.set(xlabel="scale of W[l+2] (b[l+2] = 0)",
             ylabel="||a[l+2] - a[l]|| / ||a[l]||", title="does the block pass a[l] on?")
    depths = args.depths
    for kind, style in STYLES.items():
        ax_d.errorbar(depths, [first[(kind, d)].mean() for d in depths],
                      yerr=[first[(kind, d)].std() for d in depths], fmt=style, capsize=3,
                      label=kind)
        per_layer = np.mean(norms[(kind, depths[-1])], axis=0)
        ax_l.plot(np.arange(1, len(per_layer) + 1), per_layer, style, markersize=3,
                  label=kind)
    ax_d.set(xlabel="weight layers", ylabel="norm of dL/dW, first conv", yscale="log",
             title="gradient at layer 1, at init")
    ax_d.set_xticks(depths)
    ax_l.set(xlabel="conv layer (1 = first)", ylabel="norm of dL/dW", yscale="log",
             title=f"every conv of the {depths[-1]}-layer nets")
    for ax in (ax_s, ax_d, ax_l):
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    return save_figure(fig, args, NAME, "Why ResNets work")


if __name__ == "__main__":
    main()
