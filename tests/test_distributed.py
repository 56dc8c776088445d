"""minidl.distributed: collectives, data-parallel training, sampler, launcher.

Multi-rank tests start ``mpirun -n N python tests/dist_scripts/SCRIPT`` as a
subprocess with a timeout (2 or 3 ranks on this 2-core machine). The
references are independent of the code under test: closed-form sums of
rank-dependent integers, and one process training on the global batch
without minidl.distributed. They are skipped (with the reason) only where
mpi4py is not installed; the rest (sampler, buckets, errors) always runs.
"""
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minidl
import minidl.distributed as dist
import minidl.io
from minidl.distributed import comm
from minidl.distributed.launch import launch_env, mpirun_command
from minidl.distributed.parallel import make_buckets
from minidl.distributed.sampler import DistributedSampler

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "dist_scripts"
sys.path.insert(0, str(SCRIPTS))
from tiny_model import TinyNet  # noqa: E402

requires_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None,
    reason='mpi4py is not installed; the distributed tests need: pip install ".[dist]"')


def _env(nproc):
    env = launch_env(nproc)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def run_mpi(script, *args, nproc=2, timeout=120):
    """Run SCRIPT on nproc ranks; return (CompletedProcess, seconds)."""
    cmd = mpirun_command([SCRIPTS / script, *map(str, args)], nproc)
    start = time.monotonic()
    out = subprocess.run(cmd, env=_env(nproc), capture_output=True, text=True,
                         timeout=timeout, cwd=REPO)
    return out, time.monotonic() - start


def _show(out):
    return f"exit {out.returncode}\nstdout:\n{out.stdout[-3000:]}\nstderr:\n{out.stderr[-3000:]}"


# ----------------------------------------------------------------------------
# several ranks
# ----------------------------------------------------------------------------
@requires_mpi
def test_collectives_exact_on_three_ranks_through_launch(capfd, monkeypatch):
    # 3 ranks on 2 cores also exercises launch()'s --oversubscribe
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    rc = dist.launch([SCRIPTS / "collectives.py"], nproc=3, timeout=120)
    out, err = capfd.readouterr()
    assert rc == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert sorted(line for line in out.splitlines() if line.startswith("OK")) == \
        ["OK rank 0", "OK rank 1", "OK rank 2"]
    assert [line for line in out.splitlines() if line.startswith("print0")] == \
        ["print0 from rank 0"]


def _train(tmp_path, net, steps, per_rank, nproc):
    out, _ = run_mpi("train_equivalence.py", net, steps, per_rank, nproc,
                     tmp_path / "ddp.npz", nproc=nproc, timeout=300)
    assert out.returncode == 0, _show(out)
    ref = subprocess.run([sys.executable, SCRIPTS / "train_equivalence.py", net, str(steps),
                          str(per_rank), str(nproc), tmp_path / "ref.npz", "--reference"],
                         env=_env(1), capture_output=True, text=True, timeout=300, cwd=REPO)
    assert ref.returncode == 0, _show(ref)
    ranks = [dict(np.load(tmp_path / f"ddp.rank{r}.npz")) for r in range(nproc)]
    return ranks, dict(np.load(tmp_path / "ref.rank0.npz"))


@requires_mpi
def test_two_ranks_batch_b_equal_one_process_batch_2b_tiny(tmp_path):
    """5 SGD+momentum steps, float64: 2 ranks x 4 samples == 1 process x 8."""
    ranks, ref = _train(tmp_path, "tiny", steps=5, per_rank=4, nproc=2)
    start = {n: p.numpy() for n, p in TinyNet(seed=1).named_parameters()}
    for name, w in ref.items():
        assert np.abs(w - start[name]).max() > 1e-3, f"{name} did not train"
        np.testing.assert_allclose(ranks[0][name], w, rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_array_equal(ranks[1][name], ranks[0][name], err_msg=name)


def _lenet_available():
    try:
        from minidl.models import lenet5
        lenet5()
        return True
    except Exception:  # noqa: BLE001  (minidl.nn / models still being written)
        return False


@requires_mpi
@pytest.mark.skipif(not _lenet_available(), reason="minidl.models.lenet5 is not available")
def test_two_ranks_batch_b_equal_one_process_batch_2b_lenet5(tmp_path):
    """3 steps of LeNet-5 (float64): 2 ranks x 3 samples == 1 process x 6."""
    ranks, ref = _train(tmp_path, "lenet5", steps=3, per_rank=3, nproc=2)
    for name, w in ref.items():
        np.testing.assert_allclose(ranks[0][name], w, rtol=1e-10, atol=1e-12, err_msg=name)
        np.testing.assert_array_equal(ranks[1][name], ranks[0][name], err_msg=name)


@requires_mpi
@pytest.mark.skipif(not _lenet_available(), reason="minidl.models.lenet5 is not available")
def test_digits_example_trains_checkpoints_on_rank_0_and_resumes_on_all(tmp_path):
    ckpt = tmp_path / "ckpt.npz"
    args = ["--checkpoint", ckpt, "--train-samples", 384]
    first, _ = run_mpi("train_digits.py", "--epochs", 1, *args, timeout=300)
    assert first.returncode == 0, _show(first)
    second, _ = run_mpi("train_digits.py", "--epochs", 2, "--resume", *args, timeout=300)
    assert second.returncode == 0, _show(second)
    text = re.sub(r"\x1b\[[0-9;]*m", "", first.stdout + second.stdout)   # mpirun's colour codes
    lines = text.splitlines()
    epochs = [ln for ln in lines if ln.startswith("epoch")]       # rank 0 alone prints
    assert [ln.split(":")[0] for ln in epochs] == ["epoch 1", "epoch 2"], _show(second)
    assert "resumed from epoch 1" in lines
    assert lines.count("replicas identical: True") == 2
    loss = [float(ln.split("train loss ")[1].split(",")[0]) for ln in epochs]
    assert loss[1] < loss[0]
    assert int(minidl.io.load(ckpt)["epoch"]) == 2


@requires_mpi
def test_a_rank_that_raises_aborts_the_job_instead_of_hanging():
    out, seconds = run_mpi("abort_on_error.py", nproc=2, timeout=60)
    assert out.returncode != 0, _show(out)
    assert seconds < 30, f"took {seconds:.1f} s"
    assert "deliberate failure on rank 1" in out.stderr, _show(out)
    assert "aborting all ranks" in out.stderr, _show(out)
    assert "rank 0 passed" not in out.stdout


@requires_mpi
def test_broadcast_parameters_reports_mismatched_shapes_on_every_rank():
    out, _ = run_mpi("mismatch.py", nproc=2, timeout=60)
    assert out.returncode == 0, _show(out)
    caught = sorted(line for line in out.stdout.splitlines() if " caught: " in line)
    assert [line.split(" caught")[0] for line in caught] == ["rank 0", "rank 1"], _show(out)
    for line in caught:
        assert "'fc2.weight'" in line and "(3, 5)" in line and "(2, 5)" in line, line


@pytest.mark.skipif(not minidl.cuda_is_available(), reason="needs a CUDA GPU (CuPy)")
@requires_mpi
def test_gpu_collectives_and_ddp_step_match_the_cpu():
    import cupy
    n = min(2, cupy.cuda.runtime.getDeviceCount())     # NCCL: one GPU per rank
    out, _ = run_mpi("gpu_collectives.py", nproc=n, timeout=300)
    assert out.returncode == 0, _show(out)
    assert out.stdout.count("OK rank") == n, _show(out)


# ----------------------------------------------------------------------------
# one process: errors
# ----------------------------------------------------------------------------
@pytest.mark.skipif(dist.is_initialized(), reason="this process already called init()")
@pytest.mark.parametrize("call", [
    dist.rank, dist.world_size, dist.barrier,
    lambda: dist.all_reduce(np.ones(2)),
    lambda: dist.broadcast(np.ones(2)),
    lambda: dist.allreduce_gradients(TinyNet(seed=0)),
    lambda: dist.DistributedDataParallel(TinyNet(seed=0)),
    lambda: DistributedSampler(10),
])
def test_calls_before_init_raise_naming_the_fix(call):
    with pytest.raises(RuntimeError, match=r"before minidl.distributed.init\(\)"):
        call()


def test_without_init_this_process_is_the_main_one(capsys):
    assert dist.is_main_process()
    dist.print0("hello", 3)
    assert capsys.readouterr().out == "hello 3\n"


def test_missing_mpi4py_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)       # makes the import fail
    with pytest.raises(ImportError, match=r'pip install "\.\[dist\]"'):
        comm.import_mpi()


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="rank must be"):
        DistributedSampler(10, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        DistributedSampler(10, num_replicas=0, rank=0)
    with pytest.raises(ValueError, match="3 samples cannot be split over 4 ranks"):
        DistributedSampler(3, num_replicas=4, rank=0, drop_last=True)
    with pytest.raises(ValueError, match="bucket_size_mb"):
        make_buckets([], bucket_size_mb=0)


@requires_mpi
def test_mpirun_command():
    cores = os.cpu_count()
    cmd = mpirun_command(["train.py", "--lr", "0.1"], nproc=cores + 1)
    assert cmd[1:3] == ["-n", str(cores + 1)] and cmd[-4:] == [sys.executable, "train.py",
                                                               "--lr", "0.1"]
    if "open" in subprocess.run([cmd[0], "--version"], capture_output=True, text=True,
                                env=launch_env(1)).stdout.lower():
        assert "--oversubscribe" in cmd
    assert "--oversubscribe" not in mpirun_command(["t.py"], nproc=1)
    assert mpirun_command(["t.py"], 2, hostfile="hosts")[3:5] == ["--hostfile", "hosts"]
    with pytest.raises(TypeError, match="list of arguments"):
        mpirun_command("train.py", nproc=2)
    with pytest.raises(ValueError, match="nproc"):
        mpirun_command(["train.py"], nproc=0)


def test_launch_env_gives_each_rank_its_share_of_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("NUMBA_NUM_THREADS", "3")
    env = launch_env(nproc=2 * os.cpu_count())
    assert env["OMP_NUM_THREADS"] == "1" and env["NUMBA_NUM_THREADS"] == "3"


# ----------------------------------------------------------------------------
# one process: the sampler, the buckets
# ----------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 50), replicas=st.integers(1, 6), shuffle=st.booleans(),
       drop_last=st.booleans(), seed=st.integers(0, 100), epoch=st.integers(0, 5))
def test_sampler_shards_are_disjoint_equal_and_cover_the_data(n, replicas, shuffle,
                                                               drop_last, seed, epoch):
    if drop_last and n < replicas:
        return
    samplers = [DistributedSampler(n, replicas, r, shuffle, seed, drop_last)
                for r in range(replicas)]
    for s in samplers:
        s.set_epoch(epoch)
    shards = [list(s) for s in samplers]
    per_rank = n // replicas if drop_last else -(-n // replicas)
    assert all(len(s) == len(sh) == per_rank for s, sh in zip(samplers, shards))
    everything = sum(shards, [])
    assert all(isinstance(i, int) and 0 <= i < n for i in everything)
    if drop_last:
        assert len(set(everything)) == len(everything)          # disjoint, none repeated
    else:
        assert set(everything) == set(range(n))                 # every sample seen
        assert len(everything) - n < replicas                   # padded by < one per rank
    if not shuffle:                                             # rank r: r, r+R, r+2R ...
        padded = [i % n for i in range(per_rank * replicas)]    # padding repeats 0, 1, ...
        for r, shard in enumerate(shards):
            assert shard == padded[r::replicas]


def test_sampler_reshuffles_per_epoch_with_the_shared_seed():
    a, b = DistributedSampler(100, 2, 0, seed=7), DistributedSampler(100, 2, 0, seed=7)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and list(b) == first               # new order, same seed
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(DistributedSampler(100, 2, 0, seed=8)) != first


def test_shard_view_follows_the_epoch_and_feeds_the_dataloader():
    from minidl.data.loader import DataLoader
    data = [(np.full(2, i, dtype=np.float32), i) for i in range(11)]
    seen = []
    for r in range(2):
        sampler = DistributedSampler(data, num_replicas=2, rank=r, seed=3)
        shard = sampler.shard(data)
        loader = DataLoader(shard, batch_size=4, shuffle=False, seed=r)
        sampler.set_epoch(2)
        labels = [int(v) for _, y in loader for v in y.numpy()]
        assert labels == list(sampler) and len(shard) == 6
        assert shard[-1] == data[list(sampler)[-1]]
        seen += labels
    assert set(seen) == set(range(11)) and len(seen) == 12
    with pytest.raises(IndexError):
        shard[6]
    with pytest.raises(ValueError, match="made for 11 samples"):
        sampler.shard(data[:5])


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=12),
       float64=st.lists(st.booleans(), min_size=12, max_size=12),
       limit_bytes=st.integers(4, 400))
def test_buckets_keep_order_stay_under_the_limit_and_split_only_when_needed(sizes, float64,
                                                                           limit_bytes):
    params = [minidl.Tensor(np.zeros(s, np.float64 if f else np.float32))
              for s, f in zip(sizes, float64)]
    buckets = make_buckets(params + params[:2], bucket_size_mb=limit_bytes / 2 ** 20)
    flat = [p for b in buckets for p in b.params]
    assert [id(p) for p in flat] == [id(p) for p in params]          # each once, in order
    for b, nxt in zip(buckets, buckets[1:] + [None]):
        nbytes = [p.data.nbytes for p in b.params]
        assert len({p.dtype for p in b.params}) == 1
        assert b.flat.dtype == b.params[0].dtype and b.flat.nbytes == sum(nbytes)
        assert sum(nbytes) <= limit_bytes or len(nbytes) == 1
        assert b.offsets == [sum(nbytes[:i]) // b.params[0].data.itemsize
                             for i in range(len(nbytes))]
        if nxt is not None and nxt.params[0].dtype == b.params[0].dtype:
            assert sum(nbytes) + nxt.params[0].data.nbytes > limit_bytes   # had to split
