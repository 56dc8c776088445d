"""Data-parallel throughput, scaling efficiency and communication share.

    python benchmarks/bench_distributed.py [--steps 5] [--nets lenet5 resnet18]

For each net, trains on 1 and on 2 ranks (mpirun, one thread per rank:
OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS=1) with a fixed batch per rank (weak
scaling, as data parallelism is used) on random data, and prints markdown:

* samples/s      = ranks * batch / step time (median over the timed steps);
* efficiency     = samples/s on 2 ranks / (2 * samples/s on 1 rank);
* comm share     = time in allreduce_gradients / step time (this includes
                   waiting for the slower rank);

then, on 2 ranks, the time of one gradient all-reduce of each net for
bucket sizes of 1, 4 and 25 MiB and for one message per parameter.

ResNet-18 (11.2M parameters, 10 classes) runs at 3x32x32 input so a step
takes about a second on one core; LeNet-5 at its 1x32x32. The first steps
(Numba compilation) are not timed.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)          # run from a checkout without installing minidl

BATCH = {"lenet5": 32, "resnet18": 8}
INPUT = {"lenet5": (1, 32, 32), "resnet18": (3, 32, 32)}
BUCKETS_MB = {"1 message per parameter": 1e-9, "1 MiB": 1, "4 MiB": 4, "25 MiB": 25}
WARMUP = 2


def build(net):
    from minidl.models import lenet5, resnet18
    return lenet5() if net == "lenet5" else resnet18(num_classes=10)


# ----------------------------------------------------------------------------
# what each rank runs
# ----------------------------------------------------------------------------
def worker_train(net, steps):
    """Time ``steps`` training steps; rank 0 prints one RESULT json line."""
    import minidl
    import minidl.distributed as dist
    import minidl.nn.functional as F
    from minidl.optim import SGD

    dist.init()
    minidl.manual_seed(0)
    model = dist.DistributedDataParallel(build(net))
    opt = SGD(list(model.parameters()), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(dist.rank())
    x = minidl.Tensor(rng.standard_normal((BATCH[net], *INPUT[net])).astype(np.float32))
    y = minidl.Tensor(rng.integers(0, 10, BATCH[net]))
    step_s, comm_s = [], []
    for step in range(WARMUP + steps):
        dist.barrier()
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        t1 = time.perf_counter()
        model.allreduce_gradients()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if step >= WARMUP:
            step_s.append(t3 - t0)
            comm_s.append(t2 - t1)
    if dist.is_main_process():
        step, comm = float(np.median(step_s)), float(np.median(comm_s))
        print("RESULT " + json.dumps({"net": net, "ranks": dist.world_size(),
                                      "batch": BATCH[net], "step_s": step, "comm_s": comm}),
              flush=True)


def worker_buckets(net, reps):
    """Median time of one gradient all-reduce per bucket size (rank 0 prints)."""
    import minidl
    import minidl.distributed as dist
    from minidl.distributed.parallel import make_buckets

    dist.init()
    params = list(build(net).parameters())
    for p in params:
        p.grad = minidl.Tensor(np.ones_like(p.data))
    result = {}
    for label, mb in BUCKETS_MB.items():
        buckets, times = make_buckets(params, mb), []
        for _ in range(reps + 1):
            dist.barrier()
            t0 = time.perf_counter()
            for b in buckets:
                b.allreduce_mean()
            times.append(time.perf_counter() - t0)
        result[label] = (len(buckets), float(np.median(times[1:])))
    dist.print0("RESULT " + json.dumps({"net": net, "buckets": result}))


# ----------------------------------------------------------------------------
# the driver: launch the workers, print the tables
# ----------------------------------------------------------------------------
def run_workers(nproc, *args):
    from minidl.distributed.launch import THREAD_VARIABLES, launch_env, mpirun_command
    env = launch_env(nproc)
    env.update({name: "1" for name in THREAD_VARIABLES})
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")])
    cmd = mpirun_command([os.path.abspath(__file__), *map(str, args)], nproc)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        sys.exit(f"worker failed ({' '.join(cmd)}):\n{out.stdout}\n{out.stderr}")
    return json.loads(lines[0][len("RESULT "):])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--nets", nargs="+", default=["lenet5", "resnet18"], choices=list(BATCH))
    ap.add_argument("--worker", choices=["train", "buckets"], help=argparse.SUPPRESS)
    ap.add_argument("--net", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "train":
        return worker_train(args.net, args.steps)
    if args.worker == "buckets":
        return worker_buckets(args.net, args.steps)

    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start "
          f"(other processes share the cores: the figures are noisy)\n")
    print("| net | ranks | batch/rank | step (s) | samples/s | efficiency | comm share |")
    print("|---|---|---|---|---|---|---|")
    for net in args.nets:
        base = None
        for ranks in (1, 2):
            r = run_workers(ranks, "--worker", "train", "--net", net, "--steps", args.steps)
            rate = ranks * r["batch"] / r["step_s"]
            base = base or rate
            print(f"| {net} | {ranks} | {r['batch']} | {r['step_s']:.3f} | {rate:.1f} | "
                  f"{rate / (ranks * base):.0%} | {r['comm_s'] / r['step_s']:.1%} |", flush=True)
    print("\nGradient all-reduce on 2 ranks (median of", args.steps, "runs):\n")
    print("| net | buckets | messages | all-reduce (ms) |")
    print("|---|---|---|---|")
    for net in args.nets:
        r = run_workers(2, "--worker", "buckets", "--net", net, "--steps", args.steps)
        for label, (count, seconds) in r["buckets"].items():
            print(f"| {net} | {label} | {count} | {seconds * 1e3:.2f} |", flush=True)


if __name__ == "__main__":
    main()
