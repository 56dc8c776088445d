"""``summary(model, input_shape)``: the layer-by-layer table of a network.

For every leaf layer (a module with no sub-modules) it reports the output
shape, the number of parameters, the multiply-accumulates (MACs) and the
memory of the output, which is how the case studies compare networks::

    conv:   MACs = N * OH * OW * O * (C / groups) * kh * kw
            (every output element is a dot product of C/groups * kh * kw terms)
    linear: MACs = N * in_features * out_features
    memory: bytes of the layer's output (what training keeps for backward)

Other layers (ReLU, pooling, BatchNorm...) cost 0 MACs here: their work is
small next to the convs' and is not a multiply-accumulate of weights.

How it works: one forward pass of a dummy input (zeros of ``input_shape``,
in the dtype and on the device of the model's parameters) under
``no_grad``, with the model in ``eval()`` mode (dropout off, BatchNorm on its
running statistics, GoogLeNet without its auxiliary heads). For that pass,
each leaf module's ``forward`` is replaced by a recording wrapper (an
instance attribute that shadows the class's method); afterwards the wrappers
are removed and every module gets back its own train/eval flag. A module
called twice (e.g. one ReLU used twice in a ResNet block) gives two rows; its
parameters count in the first.

Examples (the case study's cost of a 5x5 conv, 28x28x192 -> 28x28x32)::

    >>> summary(nn.Conv2d(192, 32, 5, padding=2), (192, 28, 28)).macs
    120422400
"""
from dataclasses import dataclass

import numpy as np

from .creation import zeros
from .nn import Conv2d, Linear
from .tensor import no_grad


@dataclass
class LayerRow:
    """One call of one leaf layer."""
    name: str            # dotted name in the model, e.g. "features.0"
    type: str            # class name, e.g. "Conv2d"
    output_shape: tuple  # e.g. (1, 96, 55, 55)
    params: int          # parameters of the layer (0 if counted in an earlier row)
    macs: int            # multiply-accumulates of this call
    activations: int     # bytes of the output


class Summary:
    """The result of ``summary``: ``.rows`` (LayerRow per leaf-layer call),
    ``.params`` (all parameters of the model), ``.macs`` and ``.activations``
    (sums over the rows, bytes). ``str()`` gives the aligned table."""

    def __init__(self, rows, params, input_shape):
        self.rows = rows
        self.params = params
        self.input_shape = input_shape
        self.macs = sum(r.macs for r in rows)
        self.activations = sum(r.activations for r in rows)

    def __str__(self):
        header = ("Layer (type)", "Output shape", "Params", "MACs", "Output memory")
        body = [(f"{r.name} ({r.type})" if r.name else r.type, str(r.output_shape),
                 f"{r.params:,}", f"{r.macs:,}", _bytes(r.activations)) for r in self.rows]
        widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]

        def line(row):
            return "  ".join([row[0].ljust(widths[0])] +
                             [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])])

        rule = "-" * len(line(header))
        out = [f"input {self.input_shape}", rule, line(header), rule]
        out += [line(row) for row in body]
        out += [rule, f"Total params: {self.params:,}",
                f"Total MACs: {self.macs:,} ({_si(self.macs)})",
                f"Total output memory: {_bytes(self.activations)}"]
        unused = self.params - sum(r.params for r in self.rows)
        if unused:
            out.append(f"({unused:,} params are in layers this eval-mode pass did not run)")
        return "\n".join(out)

    def __repr__(self):
        return (f"Summary(params={self.params:,}, macs={self.macs:,}, "
                f"activations={self.activations:,} bytes, {len(self.rows)} rows)")


def summary(model, input_shape):
    """Run ``model`` once on zeros of ``input_shape`` ((N,C,H,W) or (C,H,W),
    N = 1 then) and return a ``Summary`` of its leaf layers."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"summary: input_shape must be (N, C, H, W) or (C, H, W) with "
                         f"positive sizes, got {tuple(input_shape)}")
    params = list(model.parameters())
    dtype = params[0].dtype if params else np.float32
    device = params[0].device if params else "cpu"
    x = zeros(shape, dtype=dtype, device=device)

    modules = list(model.named_modules())
    leaves = [(name, m) for name, m in modules if not list(m.children())]
    flags = [(m, m.training) for _, m in modules]
    rows, counted = [], set()
    for name, m in leaves:
        m.__dict__["forward"] = _recorder(name, m, rows, counted)
    try:
        model.eval()
        with no_grad():
            model(x)
    finally:
        for _, m in leaves:
            del m.__dict__["forward"]
        for m, flag in flags:
            m.training = flag
    return Summary(rows, sum(int(p.size) for p in params), shape)


def _recorder(name, module, rows, counted):
    """A stand-in for ``module.forward`` that runs it and appends a LayerRow."""
    def forward(*args, **kwargs):
        out = type(module).forward(module, *args, **kwargs)
        outs = out if isinstance(out, tuple) else (out,)
        first_call = id(module) not in counted
        counted.add(id(module))
        params = sum(int(p.size) for p in module.parameters()) if first_call else 0
        shape = tuple(outs[0].shape) if len(outs) == 1 else tuple(tuple(o.shape) for o in outs)
        rows.append(LayerRow(name, type(module).__name__, shape, params,
                             _macs(module, outs[0]), sum(int(o.data.nbytes) for o in outs)))
        return out
    return forward


def _macs(module, out):
    """Multiply-accumulates of one call that produced ``out``."""
    if isinstance(module, Conv2d):
        # each output element: (C / groups) * kh * kw products; weight is (O, C/groups, kh, kw)
        _, c_per_group, kh, kw = module.weight.shape
        return int(out.size) * c_per_group * kh * kw
    if isinstance(module, Linear):
        # each output element: in_features products; weight is (out, in)
        return int(out.size) * module.weight.shape[1]
    return 0


def _si(n):
    """416520 -> '416.5 K', 15470264320 -> '15.47 G'."""
    for value, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= value:
            return f"{n / value:.{2 if unit == 'G' else 1}f} {unit}"
    return str(n)


def _bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
