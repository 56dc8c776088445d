"""What the experiment scripts share: options, data, a training loop, timing,
tables and figures.

Every script is run as ``python experiments/NAME.py [--quick] [--seeds S]
[--epochs E] [--jobs J] [--threads T] [--out DIR]`` and has a ``main(argv)`` that
returns its results as a dict, so the tests can run the ``--quick`` version
and check it. A script prints a Markdown table and writes ``DIR/NAME.md``
(the table and the command that made it) and ``DIR/NAME.png``.

Cores: the training runs of a script are independent, so ``--jobs J``
(default 2, one per core) runs them in J worker processes, each with
``--threads`` BLAS and Numba threads (default 1). The tensors here are
small: one thread per process loses little, while several threads on a busy
machine made BLAS 100 times slower in our runs (many small matrix products,
each waking threads that have no core to run on).
"""
import argparse
import contextlib
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import minidl  # noqa: F401  (only: is it importable?)
except ImportError:            # run from a clone without `pip install .`
    sys.path.insert(0, os.path.dirname(HERE))

from minidl import optim
from minidl.data import DataLoader, TensorDataset, load_digits
from minidl.training import evaluate, train_one_epoch


# ----------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------
def parser(description, seeds=None, epochs=None, jobs=False):
    """The options the scripts share; ``seeds`` and ``epochs`` are a script's
    defaults at full size (``--quick`` picks its reduced sizes instead). A
    script that draws nothing at random has no ``--seeds``, one that trains
    nothing no ``--epochs``; one whose runs can go to several processes
    (``run_tasks``) passes ``jobs=True``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="the reduced version the test suite runs (seconds, not minutes)")
    if seeds is not None:
        p.add_argument("--seeds", type=int, default=seeds,
                       help=f"repetitions (default {seeds})")
    if epochs is not None:
        p.add_argument("--epochs", type=int, default=epochs,
                       help=f"training epochs (default {epochs})")
    if jobs:
        p.add_argument("--jobs", type=int, default=2,
                       help="worker processes for the training runs (default 2)")
    else:
        p.set_defaults(jobs=1)
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS and Numba threads per process (default 1)")
    p.add_argument("--out", default=HERE, help="folder for NAME.md and NAME.png "
                                               "(default: experiments/)")
    return p


def parse(p, argv):
    """Parse ``argv`` (None: sys.argv) and check the numbers."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    if args.quick:
        args.jobs = 1                  # the reduced version runs in this process
    for name in ("seeds", "epochs", "jobs", "threads"):
        if getattr(args, name, 1) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    os.makedirs(args.out, exist_ok=True)
    args.options = _without_out(argv)
    return args


def _without_out(argv):
    """``argv`` less ``--out DIR`` (where the report goes is not part of it)."""
    kept, skip = [], False
    for a in argv:
        if skip or a.startswith("--out="):
            skip = False
            continue
        skip = a == "--out"
        if not skip:
            kept.append(a)
    return kept


def set_threads(n):
    """From now on, use ``n`` BLAS threads and ``n`` Numba threads."""
    import numba
    from threadpoolctl import threadpool_limits
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(limits=n)


@contextlib.contextmanager
def threads(n):
    """Run the block with ``n`` BLAS threads and ``n`` Numba threads."""
    import numba
    from threadpoolctl import threadpool_limits
    before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        numba.set_num_threads(before)


def run_tasks(fn, tasks, args):
    """[fn(*task) for task in tasks], in ``args.jobs`` processes of
    ``args.threads`` threads (in this process if jobs == 1). ``fn`` must be a
    module-level function of the script (the workers import it)."""
    if args.jobs == 1 or len(tasks) == 1:
        with threads(args.threads):
            return [fn(*task) for task in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    context = multiprocessing.get_context("spawn")   # fresh interpreters: no forked threads
    with ProcessPoolExecutor(args.jobs, mp_context=context, initializer=set_threads,
                             initargs=(args.threads,)) as pool:
        return list(pool.map(fn, *zip(*tasks)))


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------
def digits(size, classes=range(10)):
    """The bundled digits of ``classes``, standardised with the training
    split's mean and std: ((x_train, y_train), (x_test, y_test)), x float32
    (N, 1, size, size), y int64 relabelled 0, 1, ... in the order of ``classes``."""
    (xtr, ytr), (xte, yte) = load_digits(size, "train"), load_digits(size, "test")
    mean, std = xtr.mean(), xtr.std()
    classes = list(classes)
    relabel = np.full(10, -1)
    relabel[classes] = np.arange(len(classes))

    def pick(x, y):
        keep = np.isin(y, classes)
        return ((x[keep] - mean) / std).astype(np.float32), relabel[y[keep]]

    return pick(xtr, ytr), pick(xte, yte)


def per_class_subset(y, k, seed):
    """Indices of ``k`` examples of each class of ``y``, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(y == c), size=k, replace=False)
             for c in np.unique(y)]
    return np.sort(np.concatenate(picks))


def loader(x, y, batch_size=64, seed=0, shuffle=True, transform=None):
    """A DataLoader over the arrays (reshuffled each epoch from ``seed``)."""
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle,
                      seed=seed, transform=transform)


# ----------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------
def train(model, train_loader, epochs, lr, params=None, momentum=0.9, weight_decay=5e-4):
    """SGD with momentum and a cosine learning rate over ``epochs`` epochs.

    ``params`` (default: all of the model's) are the ones updated. Returns the
    per-epoch history: [{"loss", "error"}], the training loss and error (%)
    averaged over the epoch's batches, in training mode (as the ResNet paper
    plots them)."""
    params = list(model.parameters()) if params is None else list(params)
    opt = optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    schedule = optim.CosineAnnealingLR(opt, T_max=epochs)
    history = []
    for epoch in range(epochs):
        train_loader.epoch = epoch
        r = train_one_epoch(model, train_loader, opt, progress=False)
        schedule.step()
        history.append({"loss": r["loss"], "error": 100 * (1 - r["accuracy"])})
    return history


def accuracy(model, x, y, batch_size=256):
    """Held-out accuracy (%) of ``model`` in eval mode on arrays x, y."""
    return 100 * evaluate(model, loader(x, y, batch_size, shuffle=False))["accuracy"]


# ----------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------
def timed(fn, *args, **kwargs):
    """(fn(*args, **kwargs), seconds it took)."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def median_seconds(fn, repeats, warmup=1):
    """Median wall time of ``fn()`` over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = [timed(fn)[1] for _ in range(repeats)]
    return float(np.median(times))


def measure_module(model, shape, batch, repeats):
    """Summary (params, MACs per image) and the median seconds of a forward and
    of a forward+backward pass of ``model`` on a random (batch, *shape) input.

    The input requires grad, as inside a network, so backward computes dL/dx."""
    from minidl import Tensor, no_grad, summary
    s = summary(model, shape)
    x = Tensor(np.random.default_rng(0).standard_normal((batch,) + shape, dtype=np.float32),
               requires_grad=True)

    def forward():
        with no_grad():
            return model(x)

    def forward_backward():
        model.zero_grad()
        model(x).sum().backward()

    return {"summary": s, "output": tuple(forward().shape), "params": s.params,
            "macs": s.macs, "forward_s": median_seconds(forward, repeats),
            "forward_backward_s": median_seconds(forward_backward, repeats)}


def ratio_row(label, a, b):
    """A table row of the ratios a / b of params, MACs and both times."""
    return [label, "", f"{a['params'] / b['params']:.1f}", f"{a['macs'] / b['macs']:.1f}",
            f"{a['forward_s'] / b['forward_s']:.1f}",
            f"{a['forward_backward_s'] / b['forward_backward_s']:.1f}"]


# ----------------------------------------------------------------------------
# reporting
# ----------------------------------------------------------------------------
def mean_std(values, fmt="{:.1f}"):
    """'m ± s' over the values (s: sample standard deviation; '' for one value)."""
    v = np.asarray(values, dtype=float)
    if v.size == 1:
        return fmt.format(v[0])
    return f"{fmt.format(v.mean())} ± {fmt.format(v.std(ddof=1))}"


def markdown_table(headers, rows):
    """A Markdown table: the header row, the rule, one line per row."""
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def command(name, args):
    """The command line that reproduces a run, for the report."""
    return " ".join([f"python experiments/{name}.py"] + args.options)


def report(name, args, title, body, seconds):
    """Print ``body`` (Markdown) and write it with the title, the command and
    the total time to ``args.out/NAME.md``; returns the path."""
    text = (f"## {title}\n\n`{command(name, args)}` ({seconds:.0f} s on this machine, "
            f"{args.jobs} process(es) x {args.threads} thread(s))\n\n{body}\n")
    print(text)
    path = os.path.join(args.out, f"{name}.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def figure(ncols, width=4.6, height=3.6):
    """A matplotlib figure with ``ncols`` panels side by side (Agg backend)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, args, name, title):
    """Write the figure to ``args.out/NAME.png``; returns the path."""
    import matplotlib.pyplot as plt
    fig.suptitle(title)
    fig.tight_layout()
    path = os.path.join(args.out, f"{name}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
