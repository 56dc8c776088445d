"""The GPU path of conv2d: kernels/conv.cu through the GPU twins of minidl/ops/im2col.py.

Inside ``cuda.host_launcher()`` the .cu kernels run on the CPU over NumPy
arrays. im2col and col2im move data, so the twins must equal the Numba
functions exactly (col2im sums each pixel's contributions in the same order);
the whole F.conv2d, forward and backward, then runs through the twins and
must match the Numba path within rounding (the GEMMs are the same calls).
With a real GPU the same op runs through CuPy on device tensors.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minidl
import minidl.nn.functional as F
from minidl import cuda
from minidl.backend import cuda_is_available
from minidl.ops import conv
from minidl.ops import im2col as cols

from test_conv import DTYPES, conv_cases, randn, settings_of


def geometry(case):
    return conv.conv_geometry(case["x"].shape, case["weight"].shape, case["stride"],
                              case["padding"], case["dilation"], case["groups"])


@given(case=conv_cases(), dtype=st.sampled_from(DTYPES))
@settings(max_examples=40, deadline=None)
def test_im2col_kernel_equals_numba_exactly(case, dtype):
    geo, x = geometry(case), case["x"].astype(dtype)
    shape = (x.shape[1] * geo.kh * geo.kw, x.shape[0] * geo.OH * geo.OW)
    want, got = np.empty(shape, dtype), np.full(shape, np.nan, dtype)
    cols.im2col(x, want, *cols.im2col_args(geo))
    with cuda.host_launcher() as launcher:
        cols.im2col_gpu(x, got, geo)
    assert launcher.launched == {("conv.cu", "im2col"): 1}
    np.testing.assert_array_equal(got, want)


@given(case=conv_cases(), dtype=st.sampled_from(DTYPES))
@settings(max_examples=40, deadline=None)
def test_col2im_kernel_equals_numba_exactly(case, dtype):
    geo, x = geometry(case), case["x"]
    col = randn((x.shape[1] * geo.kh * geo.kw, x.shape[0] * geo.OH * geo.OW), dtype, seed=3)
    want, got = np.empty(x.shape, dtype), np.full(x.shape, np.nan, dtype)
    cols.col2im(col, want, *cols.im2col_args(geo))
    with cuda.host_launcher() as launcher:
        cols.col2im_gpu(col, got, geo)
    assert launcher.launched == {("conv.cu", "col2im"): 1}
    np.testing.assert_array_equal(got, want)


def forward_backward(case, dtype):
    """[y, x.grad, w.grad, b.grad or None] of F.conv2d on fresh leaves."""
    ts = [None if a is None else minidl.Tensor(a.astype(dtype), requires_grad=True)
          for a in (case["x"], case["weight"], case["bias"])]
    y = F.conv2d(*ts, **settings_of(case))
    y.backward(randn(y.shape, dtype, seed=4))
    return [y.data] + [None if t is None else t.grad.data for t in ts]


@given(case=conv_cases(), dtype=st.sampled_from(DTYPES))
@settings(max_examples=30, deadline=None)
def test_conv2d_through_the_kernels_matches_numba_path(case, dtype):
    want = forward_backward(case, dtype)
    with cuda.host_launcher() as launcher:
        got = forward_backward(case, dtype)
    geo = geometry(case)
    if conv.Conv2d(geo, case["groups"]).plain_gemm:
        assert not launcher.launched                 # a 1x1 conv is a GEMM on both paths
    else:
        # one chunk: forward's columns are kept for grad w, so im2col runs once
        assert launcher.launched == {("conv.cu", "im2col"): 1, ("conv.cu", "col2im"): 1}
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for g, w in zip(got, want):
        if w is not None:
            np.testing.assert_allclose(g, w, **tol)


def test_kernel_arguments_match_the_c_signature():
    """launch() checks every argument against the C signature of conv.cu:
    a wrong scalar type in a twin would raise TypeError here."""
    x = randn((1, 2, 5, 5), np.float32)
    geo = conv.conv_geometry(x.shape, (3, 2, 3, 3), padding=1)
    col = np.empty((18, 25), np.float32)
    with cuda.host_launcher():
        cols.im2col_gpu(x, col, geo)
        cols.col2im_gpu(col, x.copy(), geo)
        with pytest.raises(TypeError, match="float32"):
            cols.im2col_gpu(x.astype(np.float64), col, geo)


# ----------------------------------------------------------------------------
# on a real GPU
# ----------------------------------------------------------------------------
needs_gpu = pytest.mark.skipif(not cuda_is_available(),
                               reason="no CUDA GPU: CuPy cannot run kernels on this machine")

GPU_CASES = {
    "3x3 pad 1": dict(padding=1),
    "strided dilated": dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
    "groups": dict(groups=2, padding="same"),
    "1x1": {},
}


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", GPU_CASES)
def test_on_gpu_matches_cpu(name, dtype):
    kwargs = GPU_CASES[name]
    case = dict(x=randn((2, 4, 9, 8)), weight=randn((6, 4 // kwargs.get("groups", 1), 3, 2), seed=1),
                bias=randn((6,), seed=2), stride=1, padding=0, dilation=1, groups=1)
    if name == "1x1":
        case["weight"] = randn((6, 4, 1, 1), seed=1)
    case.update(kwargs)
    want = forward_backward(case, dtype)
    ts = [minidl.tensor(case[k].astype(dtype), requires_grad=True, device="cuda")
          for k in ("x", "weight", "bias")]
    y = F.conv2d(*ts, **settings_of(case))
    y.backward(minidl.tensor(randn(y.shape, dtype, seed=4), device="cuda"))
    assert y.device == "cuda" and all(t.grad.device == "cuda" for t in ts)   # stayed on the GPU
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    for got, w in zip([y] + [t.grad for t in ts], want):
        np.testing.assert_allclose(got.numpy(), w, **tol)
