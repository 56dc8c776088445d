"""Every kernel of kernels/*.cu runs clean under ASan + UBSan.

Each case calls a public op (``F.conv2d``, ``F.max_pool2d``...) forward and
backward on small NumPy tensors inside the sanitized host launcher, so the
whole GPU path runs: the op's GPU twins, ``cuda.launch`` and the .cu kernels.
The shapes hit the edges where out-of-bounds bugs live (padding, ceil_mode
windows past the border, dilation, stride > kernel, windows wider than the
input). A bug aborts the run with the kernel's line; results must also
match the CPU (Numba) path. A family is skipped until its kernels/<family>.cu
exists; the last test fails if some kernel in kernels/*.cu is never launched.
"""
import numpy as np
import pytest

import minidl
import minidl.nn.functional as F
from minidl import cuda

pytestmark = pytest.mark.asan


def conv(x, w, **kw):
    return "conv", lambda x, w, b: F.conv2d(x, w, b, **kw), [x, w, (w[0],)]


def op(family, fn, x, **kw):
    return family, lambda x: fn(x, **kw), [x]


CASES = {
    "conv 3x3 pad 1": conv((2, 3, 7, 6), (4, 3, 3, 3), padding=1),
    "conv strided dilated": conv((1, 2, 9, 8), (3, 2, 3, 2), stride=(2, 3), padding=(2, 0),
                                 dilation=(2, 1)),
    "conv groups 1x1 stride 2": conv((2, 4, 5, 5), (6, 2, 1, 1), stride=2, groups=2),
    "conv kernel = image": conv((1, 1, 4, 4), (2, 1, 4, 4)),
    "conv same even kernel": conv((1, 2, 3, 5), (2, 2, 2, 2), padding="same"),
    "max pool 3/2 pad 1": op("pool", F.max_pool2d, (2, 3, 7, 6), kernel_size=3, stride=2, padding=1),
    "max pool ceil": op("pool", F.max_pool2d, (1, 2, 8, 7), kernel_size=(3, 2), stride=(2, 3),
                        ceil_mode=True),
    "max pool ceil pad": op("pool", F.max_pool2d, (1, 1, 5, 5), kernel_size=2, padding=1,
                            ceil_mode=True),
    "avg pool pad counted": op("pool", F.avg_pool2d, (2, 3, 7, 6), kernel_size=3, stride=2,
                               padding=1),
    "avg pool ceil pad not counted": op("pool", F.avg_pool2d, (1, 2, 5, 6), kernel_size=2,
                                        padding=1, ceil_mode=True, count_include_pad=False),
    "avg pool stride > kernel": op("pool", F.avg_pool2d, (1, 1, 7, 7), kernel_size=2, stride=3),
    "lrn 3": op("lrn", F.local_response_norm, (2, 5, 3, 4), size=3),
    "lrn wider than C": op("lrn", F.local_response_norm, (1, 3, 2, 2), size=5),
    "lrn even": op("lrn", F.local_response_norm, (2, 6, 2, 3), size=4, alpha=0.1, k=1.0),
    "lrn 1": op("lrn", F.local_response_norm, (1, 2, 3, 1), size=1, beta=0.5),
}


def evaluate(fn, shapes, dtype, seed=0):
    """[y, grad of each input] for random inputs and a random output gradient."""
    rng = np.random.default_rng(seed)
    inputs = [minidl.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True)
              for s in shapes]
    y = fn(*inputs)
    y.backward(rng.standard_normal(y.shape).astype(dtype))
    return [y.data] + [t.grad.data for t in inputs]


def family_exists(family):
    return (cuda.kernel_dir() / f"{family}.cu").exists()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", CASES)
def test_op_runs_clean_and_matches_the_cpu_path(name, dtype, sanitized):
    family, fn, shapes = CASES[name]
    assert family_exists(family), f"kernels/{family}.cu is missing"
    expected = evaluate(fn, shapes, dtype)                  # the CPU (Numba) path
    with sanitized() as launcher:
        got = evaluate(fn, shapes, dtype)                   # the .cu kernels, sanitized
    assert any(f == f"{family}.cu" for f, _ in launcher.launched), (
        f"{name}: no kernel of kernels/{family}.cu ran; is the op's GPU twin wired to "
        f"cuda.use_gpu_path?")
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    for what, g, e in zip(["output"] + [f"grad {i}" for i in range(len(shapes))], got, expected):
        np.testing.assert_allclose(g, e, **tol, err_msg=f"{name}: {what}")


def test_every_kernel_is_exercised(sanitized):
    with sanitized() as launcher:
        for family, fn, shapes in CASES.values():
            if family_exists(family):
                evaluate(fn, shapes, np.float32)
    declared = {(path.name, k) for path in cuda.kernel_files() for k in cuda.load_source(path).kernels}
    missing = sorted(declared - set(launcher.launched))
    assert not missing, f"kernels never launched by the asan cases: {missing}; add a case"
