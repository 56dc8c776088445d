"""Rank 1 builds a model whose fc2.weight has another shape: every rank must
raise the same ValueError from broadcast_parameters (none may hang).

Each rank prints "rank R caught: MESSAGE" on one line, then all meet at a
barrier and exit 0, so the test can read every rank's message.
"""
from minidl import Tensor

import minidl.distributed as dist
from tiny_model import TinyNet

dist.init()
model = TinyNet(seed=0)
if dist.rank() == 1:
    model.w2 = Tensor(model.w2.data[:2].copy(), requires_grad=True)      # (2, 5)
try:
    dist.broadcast_parameters(model)
except ValueError as e:
    print(f"rank {dist.rank()} caught: " + str(e).replace("\n", " | "), flush=True)
dist.barrier()
