"""Convert a torchvision state_dict (``.pth``) to a minidl ``.npz``.

    python -m minidl.convert resnet50-11ad3fa6.pth resnet50.npz --arch resnet50

then, in minidl (no torch needed)::

    model = minidl.models.resnet50()
    model.load_state_dict(minidl.load("resnet50.npz"), strict=True)

The torchvision-compatible networks of ``minidl.models`` use torchvision's
parameter names, shapes and layouts (conv weights (out, in/groups, kh, kw),
linear weights (out, in)), so the name mapping is the identity and the
arrays are copied as they are. Archs that convert, and the minidl model a
converted file loads into:

    alexnet             alexnet(variant="torchvision")
    vgg16, vgg19        vgg16(), vgg19()
    resnet18 ... 152    resnet18() ... resnet152()
    googlenet           googlenet(variant="torchvision", transform_input=True);
                        torchvision's file holds the aux1/aux2 heads too, so
                        aux_logits=True (the default) loads it as it is

LeNet-5, ``alexnet(variant="original")`` (96-256-384-384-256 filters, LRN,
no torchvision counterpart) and ``googlenet(variant="original")`` (5x5
branch, no BatchNorm) have no torchvision weights and do not convert.

torch is needed only to read the ``.pth`` file and is imported only there.
"""
import argparse
import sys

import numpy as np

CONVERTIBLE = ("alexnet", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50",
               "resnet101", "resnet152", "googlenet")


def map_name(name, arch):
    """The minidl name of torchvision parameter ``name`` of ``arch`` (the identity)."""
    _check_arch(arch)
    return name


def convert_state_dict(state_dict, arch):
    """torchvision state_dict (name -> array-like) -> minidl state_dict (name -> ndarray).

    Pure: no torch, no files. Values may be NumPy arrays or anything
    ``np.asarray`` takes; names are mapped with ``map_name``.
    """
    _check_arch(arch)
    out = {}
    for name, value in state_dict.items():
        out[map_name(name, arch)] = np.asarray(value)
    return out


def read_torch_state_dict(path):
    """Read a ``.pth`` file with torch and return name -> NumPy array."""
    try:
        import torch
    except ImportError as e:
        raise RuntimeError(f"reading {path} needs PyTorch, which is not installed ({e}); "
                           f"install it (pip install torch) to convert torchvision weights. "
                           f"Converted .npz files load without it.") from None
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]            # a training checkpoint around the state_dict
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors), "
                         f"got {type(obj).__name__}")
    return {name: t.detach().cpu().numpy() for name, t in obj.items()}


def convert(input_path, output_path, arch):
    """Read torchvision's ``input_path``, write minidl's ``output_path``; return the dict."""
    from .io import save
    state = convert_state_dict(read_torch_state_dict(input_path), arch)
    save(state, output_path)
    return state


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m minidl.convert",
        description="Convert a torchvision state_dict (.pth) to a minidl .npz file.")
    parser.add_argument("input", help="torchvision .pth file (a state_dict)")
    parser.add_argument("output", help="minidl .npz file to write")
    parser.add_argument("--arch", required=True, choices=CONVERTIBLE,
                        help="the torchvision architecture the weights belong to")
    args = parser.parse_args(argv)
    try:
        state = convert(args.input, args.output, args.arch)
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        print(f"minidl.convert: error: {e}", file=sys.stderr)
        return 2
    n = sum(int(v.size) for v in state.values())
    print(f"wrote {args.output}: {len(state)} arrays, {n:,} values ({args.arch})")
    return 0


def _check_arch(arch):
    if arch not in CONVERTIBLE:
        raise ValueError(f"arch {arch!r} has no torchvision weights to convert; "
                         f"convertible archs: {', '.join(CONVERTIBLE)}")


if __name__ == "__main__":
    sys.exit(main())
