"""Rank 1 raises while rank 0 waits in an all-reduce that rank 1 never joins.

Without init()'s excepthook rank 0 would wait forever; with it, rank 1's
uncaught exception aborts the job and mpirun exits non-zero.
"""
import numpy as np

import minidl.distributed as dist

dist.init()
if dist.rank() == 1:
    raise ValueError("deliberate failure on rank 1")
dist.all_reduce(np.ones(3))
print("rank 0 passed the all-reduce: the job was not aborted", flush=True)
