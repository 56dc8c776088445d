"""Optional peer columns: PyTorch and Chainer on the CPU, same cases, same run.

Neither is a dependency: ``available()`` tries the imports and the runner
asks for a peer only when it imports. Each peer runs the same float32 arrays
with the same thread count as minidl (``torch.set_num_threads``) and is timed
with the same ``measure``. Settings that the libraries spell differently:
PyTorch's local_response_norm divides alpha by size (minidl and Chainer do
not), so it gets alpha * size.
"""
import numpy as np

from .harness import measure

LRN = dict(alpha=1e-4, beta=0.75, k=2.0)


def available():
    """The peers that import here, e.g. ["torch"]."""
    found = []
    for name in ("torch", "chainer"):
        try:
            __import__(name)
            found.append(name)
        except Exception:
            pass
    return found


def kernel(peer, case, arrays, repeats, threads):
    """{"fwd": timing, "fwd+bwd": timing} of ``case`` in ``peer``."""
    op, wrap, backward = (_torch_kernel if peer == "torch" else _chainer_kernel)(case, threads)
    gy = np.random.default_rng(1).standard_normal(case.out_shape, dtype=np.float32)
    plain = {k: wrap(v, False) for k, v in arrays.items()}
    leaves = {k: wrap(v, True) for k, v in arrays.items()}
    return {"fwd": measure(lambda: op(**plain), repeats=repeats),
            "fwd+bwd": measure(lambda: backward(op(**leaves), gy, leaves), repeats=repeats)}


def _torch_kernel(case, threads):
    import torch
    import torch.nn.functional as F
    if threads:
        torch.set_num_threads(threads)
    ops = {"conv": lambda x, w, b: F.conv2d(x, w, b, stride=case.s, padding=case.p),
           "maxpool": lambda x: F.max_pool2d(x, case.k, case.s),
           "avgpool": lambda x: F.avg_pool2d(x, case.k, case.s),
           "lrn": lambda x: F.local_response_norm(x, case.k, alpha=LRN["alpha"] * case.k,
                                                  beta=LRN["beta"], k=LRN["k"])}

    def wrap(a, grad):
        return torch.from_numpy(a.copy()).requires_grad_(grad)

    def backward(y, gy, leaves):
        y.backward(torch.from_numpy(gy))
        for t in leaves.values():
            t.grad = None
    return ops[case.op], wrap, backward


def _chainer_kernel(case, threads):
    import chainer
    import chainer.functions as F
    ops = {"conv": lambda x, w, b: F.convolution_2d(x, w, b, stride=case.s, pad=case.p),
           "maxpool": lambda x: F.max_pooling_2d(x, case.k, case.s, cover_all=False),
           "avgpool": lambda x: F.average_pooling_2d(x, case.k, case.s),
           "lrn": lambda x: F.local_response_normalization(x, n=case.k, **LRN)}

    def wrap(a, grad):
        return chainer.Variable(a.copy(), requires_grad=grad)

    def backward(y, gy, leaves):
        y.grad = gy
        y.backward()
        for v in leaves.values():
            v.cleargrad()
    return ops[case.op], wrap, backward


def network(peer, case, batch, repeats, threads):
    """PyTorch only (torchvision's models; LeNet-5 built here): training step
    and inference timings, as networks.run_network measures minidl's."""
    if peer != "torch":
        raise NotImplementedError(f"no {peer} networks in the benchmark")
    import torch
    if threads:
        torch.set_num_threads(threads)
    model = _torch_model(case)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((batch, case.channels, case.size, case.size),
                                             dtype=np.float32))
    target = torch.from_numpy(rng.integers(0, case.num_classes, size=batch))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad()
        out = model(x)
        if isinstance(out, tuple):                      # GoogLeNet's aux heads
            logits, aux2, aux1 = out
            loss = (torch.nn.functional.cross_entropy(logits, target) + 0.3 * (
                torch.nn.functional.cross_entropy(aux1, target)
                + torch.nn.functional.cross_entropy(aux2, target)))
        else:
            loss = torch.nn.functional.cross_entropy(out, target)
        loss.backward()
        opt.step()

    model.eval()
    with torch.no_grad():
        infer = measure(lambda: model(x), repeats=repeats, min_sample_s=0)
    model.train()
    train = measure(step, repeats=repeats, min_sample_s=0)
    return {"train": {"time": train, "images_per_s": batch / train["median"]},
            "inference": {"time": infer, "images_per_s": batch / infer["median"]}}


def _torch_model(case):
    import torch.nn as nn
    if case.model == "lenet5":
        return nn.Sequential(nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5),
                             nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(400, 120),
                             nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))
    import torchvision.models as tv
    if case.model == "googlenet":
        return tv.googlenet(weights=None, aux_logits=True, init_weights=True)
    return getattr(tv, case.model)(weights=None)
