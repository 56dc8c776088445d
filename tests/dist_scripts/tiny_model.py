"""A two-layer network of bare Tensors for the distributed tests.

It has what minidl.distributed uses of a Module (named_parameters,
named_buffers, __call__) and nothing else, so the tests of the collectives
do not depend on minidl.nn.

    x (N, 6) -> h = tanh(x @ W1^T + b1)  (N, 5) -> logits = h @ W2^T + b2  (N, 3)

Buffers: ``running_mean`` (5,) follows the mean of h as BatchNorm's does
(momentum 0.1); ``num_batches_tracked`` counts forwards (int64).
"""
import numpy as np

from minidl import Tensor


class TinyNet:
    def __init__(self, seed, dtype=np.float64, hidden=5):
        rng = np.random.default_rng(seed)

        def param(*shape):
            return Tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True)

        self.w1, self.b1 = param(hidden, 6), param(hidden)
        self.w2, self.b2 = param(3, hidden), param(3)
        self.running_mean = Tensor(np.zeros(hidden, dtype=dtype))
        self.num_batches_tracked = Tensor(np.zeros((), dtype=np.int64))

    def named_parameters(self):
        return iter([("fc1.weight", self.w1), ("fc1.bias", self.b1),
                     ("fc2.weight", self.w2), ("fc2.bias", self.b2)])

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def named_buffers(self):
        return iter([("running_mean", self.running_mean),
                     ("num_batches_tracked", self.num_batches_tracked)])

    def __call__(self, x):
        h = (x @ self.w1.T + self.b1).tanh()                       # (N, hidden)
        self.running_mean.data[...] = 0.9 * self.running_mean.data + 0.1 * h.data.mean(0)
        self.num_batches_tracked.data[...] += 1
        return h @ self.w2.T + self.b2                             # (N, 3)
