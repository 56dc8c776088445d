"""The ``minidl`` command line (also ``python -m minidl``).

    minidl train lenet5                 the main job: LeNet-5 on the bundled digits
    minidl summary NET [--input-size]   layer table: shapes, params, MACs
    minidl gradcheck NET                gradient check of a reduced-size NET in float64
    minidl augment IMAGE                PNG grid of every augmentation
    minidl predict CKPT IMAGES...       class predictions, optionally ten-crop / ensemble
    minidl bench                        the benchmark suite (benchmarks/RESULTS.md)
"""
import argparse
import os
import sys
import time


def main(argv=None):
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:                   # the suite parses its own options
        from . import bench
        return bench.main(argv[1:])
    args = parser.parse_args(argv)
    args.argv = argv
    if not getattr(args, "command", None):
        parser.print_help()
        return 1
    try:
        return args.run(args) or 0
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        print(f"minidl {args.command}: error: {e}", file=sys.stderr)
        return 2


def _parser():
    p = argparse.ArgumentParser(prog="minidl", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a network on the bundled digits (the main job)")
    t.add_argument("net", help="network name (lenet5)")
    t.add_argument("--epochs", type=int, default=15)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (momentum 0.9)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--workers", type=int, default=1,
                   help="background threads that prepare minibatches")
    t.add_argument("--no-augment", dest="augment", action="store_false",
                   help="train without the random crops (padding 2) and rotations (10 deg)")
    t.add_argument("--out", default=None, help="output folder (default runs/NET)")
    t.add_argument("--fresh", action="store_true",
                   help="ignore an existing checkpoint instead of resuming from it")
    t.add_argument("--nproc", type=int, default=1,
                   help="data-parallel processes on this machine (needs the dist extra)")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(run=_train)

    s = sub.add_parser("summary", help="per-layer output shapes, parameters and MACs")
    s.add_argument("net")
    s.add_argument("--input-size", type=int, nargs="+", default=None,
                   help="C H W (default: the network's own input size)")
    s.set_defaults(run=_summary)

    g = sub.add_parser("gradcheck", help="numerical gradient check of a reduced-size network")
    g.add_argument("net")
    g.set_defaults(run=_gradcheck)

    a = sub.add_parser("augment", help="write a PNG grid showing every augmentation")
    a.add_argument("image", help="an image file, or 'china' / 'flower' (bundled photos)")
    a.add_argument("--out", default="augmentations.png")
    a.add_argument("--seed", type=int, default=0)
    a.set_defaults(run=_augment)

    pr = sub.add_parser("predict", help="classify image files with a trained checkpoint")
    pr.add_argument("checkpoint")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--ten-crop", action="store_true",
                    help="average over four corners + centre crops and their mirrors")
    pr.add_argument("--ensemble", nargs="+", default=[], metavar="CKPT",
                    help="more checkpoints whose softmax outputs are averaged in")
    pr.set_defaults(run=_predict)

    sub.add_parser("bench", help="run the benchmark suite (minidl bench --help)")
    return p


# ----------------------------------------------------------------------------
def _train(args):
    from . import recipes
    if args.nproc > 1:
        from . import distributed
        return distributed.launch(["-m", "minidl"] + _drop_nproc(args.argv), args.nproc)
    out = args.out or os.path.join("runs", args.net)
    t0 = time.perf_counter()
    report = recipes.train_on_digits(
        args.net, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, workers=args.workers, augment=args.augment, out=out,
        resume=not args.fresh, progress=not args.no_progress)
    if report is None:          # a non-zero rank of a distributed run
        return 0
    print(f"\nnetwork: {args.net} ({report['params']:,} parameters)")
    print(f"data: digits, {report['n_train']} training / {report['n_test']} test images")
    print(f"time: {time.perf_counter() - t0:.1f} s, {report['images_per_s']:.0f} images/s")
    print(f"checkpoint: {report['checkpoint']}")
    print(f"training curve: {report['curve']}")
    print(f"test accuracy: {100 * report['test_accuracy']:.1f}%")
    return 0


def _drop_nproc(argv):
    """The command line without its --nproc N (each rank runs the rest)."""
    out, skip = [], False
    for a in argv:
        if not skip and not a.startswith("--nproc"):
            out.append(a)
        skip = a == "--nproc"
    return out


def _summary(args):
    from . import models, summary
    model = models.get(args.net)
    shape = tuple(args.input_size) if args.input_size else models.input_shape(args.net)
    print(summary(model, shape))


def _gradcheck(args):
    from . import recipes
    ok, seconds, desc = recipes.gradcheck_network(args.net)
    print(f"gradcheck {args.net} ({desc}): {'passed' if ok else 'FAILED'} in {seconds:.1f} s")
    return 0 if ok else 1


def _augment(args):
    from .data import transforms
    from .recipes import read_image
    image = read_image(args.image)
    transforms.make_augmentation_grid(image, args.out, seed=args.seed)
    print(f"wrote {args.out}")


def _predict(args):
    from . import recipes
    for path, label, prob in recipes.predict_files(args.checkpoint, args.images,
                                                   ten_crop=args.ten_crop,
                                                   ensemble=args.ensemble):
        print(f"{path}: class {label} (p={prob:.3f})")
