"""The command line: ``minidl bench`` == ``python benchmarks/run.py``.

Order of a run: the environment and the SGEMM roofline first (every conv
figure is a percentage of it), then each kernel case (fast paths, then the
naive references under a time cap), each network, the SGEMM again (the
roofline is the faster of the two medians: a busy moment must not lower
the ceiling), and the cold start; each in
its own process (harness.py). Then results.json, RESULTS.md and the charts
are written to ``--out`` (report.py) and the targets are printed.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import cases as C
from .harness import clean_environment, run_child
from .kernels import COLD_START_CODE, COLD_START_SHAPE

# what --quick changes: fewer repeats, smaller network batches, smaller naive slices
SETTINGS = {
    "full": dict(repeats=5, sgemm_repeats=7, naive_budget=2_000_000, naive_cap_s=300,
                 case_timeout_s=900),
    "quick": dict(repeats=3, sgemm_repeats=3, naive_budget=100_000, naive_cap_s=60,
                  case_timeout_s=300),
}
SGEMM_N, GPU_SGEMM_N = 2048, 4096


def parse_args(argv, prog):
    p = argparse.ArgumentParser(
        prog=prog, description="minidl benchmark suite: kernels (naive / Numba / CUDA), "
        "networks, memory, cold start; writes results.json, RESULTS.md and PNG charts.")
    p.add_argument("--quick", action="store_true",
                   help="fewer repeats, smaller network batches and naive slices (a check, "
                        "not the reported figures)")
    p.add_argument("--only", metavar="PATTERN", default="",
                   help="run only cases whose name matches: comma-separated globs "
                        "('conv/*') or substrings ('vgg'); see --list")
    p.add_argument("--no-naive", action="store_true", help="skip the naive NumPy references")
    p.add_argument("--no-peers", action="store_true",
                   help="skip the PyTorch / Chainer columns even if they import")
    p.add_argument("--no-gpu", action="store_true", help="skip the CUDA columns")
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS and Numba threads (default: as the environment gives)")
    p.add_argument("--out", default="benchmarks", help="folder for results.json, RESULTS.md, "
                   "*.png (default: ./benchmarks)")
    p.add_argument("--list", action="store_true", help="print the case names and exit")
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    return args


def command_line(prog, args, only=None):
    """The command that reproduces (part of) this run."""
    parts = [prog]
    if args.quick:
        parts.append("--quick")
    if args.threads:
        parts.append(f"--threads {args.threads}")
    if args.no_naive:
        parts.append("--no-naive")
    only = args.only if only is None else only
    if only:
        parts.append(f"--only '{only}'")
    return " ".join(parts)


def _get_gflops(sgemm_result):
    return sgemm_result.get("cpu", {}).get("gflops", 0.0)


def _say(t0, text):
    print(f"[{time.perf_counter() - t0:6.0f} s] {text}", flush=True)


def _status(result):
    return f"ERROR {result['error']}" if "error" in result else f"done in {result['wall_s']:.1f} s"


def cold_start(timeout):
    """import minidl + first conv2d in fresh processes: with an empty Numba
    cache (a temporary NUMBA_CACHE_DIR, so every kernel compiles), then again
    with the cache that run filled."""
    out = {"what": COLD_START_SHAPE}
    with tempfile.TemporaryDirectory(prefix="minidl-numba-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            try:
                proc = subprocess.run([sys.executable, "-c", COLD_START_CODE], env=env,
                                      capture_output=True, text=True, timeout=timeout)
                wall = time.perf_counter() - t0
                if proc.returncode != 0:
                    out[label] = {"error": proc.stderr.strip().splitlines()[-1:]}
                    continue
                out[label] = dict(json.loads(proc.stdout.strip().splitlines()[-1]),
                                  process_s=wall)
            except subprocess.TimeoutExpired:
                out[label] = {"error": f"timeout after {timeout} s"}
    return out


def _git(root):
    def git(*cmd):
        try:
            return subprocess.run(["git", "-C", str(root), *cmd], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def run(args, prog):
    """Measure every selected case; return the results dict."""
    mode = "quick" if args.quick else "full"
    s = SETTINGS[mode]
    removed = clean_environment(args.threads)
    t0 = time.perf_counter()
    results = {"meta": {
        "command": command_line(prog, args), "prog": prog, "mode": mode, "settings": s,
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "removed_env": removed, "git": _git(Path(__file__).resolve().parents[2])},
        "kernels": {}, "networks": {}}
    with tempfile.TemporaryDirectory(prefix="minidl-bench-") as work:
        env = run_child({"kind": "env"}, 120, work)
        results["environment"] = env.get("env", env)
        gpu = bool(results["environment"].get("gpu")) and not args.no_gpu
        peers = [] if args.no_peers else [p for p in ("torch", "chainer")
                                          if results["environment"].get(p)]
        threads = args.threads or results["environment"].get("numba_threads")
        results["meta"].update(gpu=gpu, peers=peers, threads=threads)
        _say(t0, f"environment: {results['environment'].get('cpu')}, {threads} threads, "
                 f"GPU: {results['environment'].get('gpu') or 'none'}")
        sgemm = {"kind": "sgemm", "n": SGEMM_N, "repeats": s["sgemm_repeats"], "gpu": gpu,
                 "gpu_n": GPU_SGEMM_N}
        first = run_child(sgemm, 300, work)
        _say(t0, f"SGEMM {SGEMM_N}^3: {_get_gflops(first):.1f} GFLOP/s")
        common = {"repeats": s["repeats"], "gpu": gpu, "peers": peers, "threads": threads}
        for case in C.KERNEL_CASES:
            if not C.selected(case.name, args.only):
                continue
            entry = results["kernels"][case.name] = {}
            entry["fast"] = run_child(dict(common, kind="kernel", case=case.name),
                                      s["case_timeout_s"], work)
            _say(t0, f"{case.name}: {_status(entry['fast'])}")
            if not args.no_naive:
                entry["naive"] = run_child({"kind": "naive", "case": case.name,
                                            "budget": s["naive_budget"]}, s["naive_cap_s"], work)
                _say(t0, f"{case.name} naive: {_status(entry['naive'])}")
        for case in C.NETWORK_CASES:
            if not C.selected(case.name, args.only):
                continue
            batch = case.quick_batch if args.quick else case.batch
            r = run_child(dict(common, kind="network", case=case.name, batch=batch),
                          s["case_timeout_s"], work)
            results["networks"][case.name] = r
            _say(t0, f"{case.name} (N={batch}): {_status(r)}")
        last = run_child(sgemm, 300, work)                # the load may have changed
        _say(t0, f"SGEMM again: {_get_gflops(last):.1f} GFLOP/s")
        results["sgemm"] = dict(max((first, last), key=_get_gflops), runs=[first, last])
        if C.selected(C.COLD_START_CASE, args.only):
            results["cold_start"] = cold_start(s["case_timeout_s"])
            _say(t0, f"{C.COLD_START_CASE}: done")
    results["meta"]["duration_s"] = time.perf_counter() - t0
    return results


def main(argv=None, prog="minidl bench"):
    """Run the benchmark; write the reports; return the exit status (0)."""
    from . import report
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--"]:                   # `minidl bench -- --quick` (argparse REMAINDER)
        argv = argv[1:]
    args = parse_args(argv, prog)
    if args.list:
        print("\n".join(C.all_case_names()))
        return 0
    if args.only and not any(C.selected(n, args.only) for n in C.all_case_names()):
        print(f"--only {args.only!r} matches no case; cases:\n  "
              + "\n  ".join(C.all_case_names()), file=sys.stderr)
        return 2
    results = run(args, prog)
    paths = report.write(results, Path(args.out), command_line(prog, args),
                         lambda only: command_line(prog, args, only))
    print(report.targets_text(results))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
