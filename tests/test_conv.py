"""conv2d on the CPU (Numba im2col/col2im + BLAS GEMM).

Oracles, none of them the fast code's own output:
* forward: conv2d_naive, the formula as loops, on hypothesis-drawn shapes,
  strides, paddings (ints, pairs, "same", "valid"), dilations and groups;
* backward: conv2d_naive_backward (the chain rule written as loops) on drawn
  cases, and minidl.gradcheck (float64 central differences) for every option;
* im2col: im2col_naive (its definition as loops); col2im and
  col2im_interleaved: col2im_naive (the same loops, adding), and the
  adjoint identity <im2col(x), c> == <x, col2im(c)>;
* output sizes: PyTorch's formula, written here; padding="same": an explicit
  np.pad with the extra row/column at the bottom/right.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minidl
import minidl.nn.functional as F
from minidl.ops import conv, parallel
from minidl.ops import im2col as cols

DTYPES = [np.float32, np.float64]


def randn(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def int_or_pair(low, high):
    """An int, or a tuple of two ints, in [low, high]."""
    return st.one_of(st.integers(low, high), st.tuples(st.integers(low, high), st.integers(low, high)))


@st.composite
def conv_cases(draw, max_n=2, wide=False, images=None):
    """Keyword arguments of conv2d with shapes and settings that fit together
    (wide: inputs up to 40 columns wider than the kernel's span, so that
    output rows fall on both sides of im2col's SHORT_ROW; images: that many
    images instead of 1..max_n)."""
    groups = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dilation, stride = draw(int_or_pair(1, 2)), draw(int_or_pair(1, 3))
    (dh, dw), kind = pair(dilation), draw(st.sampled_from(["numbers", "same", "valid"]))
    if kind == "numbers":
        padding = draw(int_or_pair(0, 2))
        pad_h, pad_w = 2 * pair(padding)[0], 2 * pair(padding)[1]
    elif kind == "same":
        padding, stride = "same", draw(st.sampled_from([1, (1, 1)]))
        pad_h, pad_w = dh * (kh - 1), dw * (kw - 1)
    else:
        padding, pad_h, pad_w = "valid", 0, 0
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    H = draw(st.integers(max(1, span_h - pad_h), span_h - pad_h + 5))
    W = draw(st.integers(max(1, span_w - pad_w), span_w - pad_w + (40 if wide else 5)))
    N = images or draw(st.integers(1, max_n))
    Cg, Og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    return dict(x=randn((N, Cg * groups, H, W), seed=seed),
                weight=randn((Og * groups, Cg, kh, kw), seed=seed + 1),
                bias=randn((Og * groups,), seed=seed + 2) if draw(st.booleans()) else None,
                stride=stride, padding=padding, dilation=dilation, groups=groups)


def settings_of(case):
    return {k: case[k] for k in ("stride", "padding", "dilation", "groups")}


def naive(case):
    """conv2d_naive in float64 on the case's arrays."""
    geo = conv.conv_geometry(case["x"].shape, case["weight"].shape, case["stride"],
                             case["padding"], case["dilation"], case["groups"])
    return conv.conv2d_naive(case["x"], case["weight"], case["bias"], geo, case["groups"]), geo


def fast(case, dtype, requires_grad=False):
    """F.conv2d on Tensors of ``dtype``; returns (y, (x, w, b) tensors)."""
    ts = [None if a is None else minidl.Tensor(a.astype(dtype), requires_grad=requires_grad)
          for a in (case["x"], case["weight"], case["bias"])]
    return F.conv2d(*ts, **settings_of(case)), ts


def tolerance(dtype, case):
    """Float32 error grows with the length of the sums (C_g*kh*kw terms)."""
    return dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else \
        dict(rtol=1e-4, atol=2e-5 * np.sqrt(case["weight"][0].size))


def out_size(size, k, s, p_total, d):
    """PyTorch's output size: floor((size + padding - d*(k-1) - 1) / s) + 1."""
    return (size + p_total - d * (k - 1) - 1) // s + 1


# ----------------------------------------------------------------------------
# forward and backward against the naive loops
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@given(case=conv_cases())
@settings(max_examples=40, deadline=None)
def test_forward_matches_naive_loops(dtype, case):
    y, _ = fast(case, dtype)
    want, geo = naive(case)
    assert y.dtype == dtype
    np.testing.assert_allclose(y.data, want, **tolerance(dtype, case))


@given(case=conv_cases())
@settings(max_examples=40, deadline=None)
def test_output_shape_follows_pytorch_formula(case):
    y, _ = fast(case, np.float64)
    N, C, H, W = case["x"].shape
    O, _, kh, kw = case["weight"].shape
    (sh, sw), (dh, dw) = pair(case["stride"]), pair(case["dilation"])
    if case["padding"] == "same":
        assert y.shape == (N, O, H, W)
        return
    ph, pw = pair(0 if case["padding"] == "valid" else case["padding"])
    assert y.shape == (N, O, out_size(H, kh, sh, 2 * ph, dh), out_size(W, kw, sw, 2 * pw, dw))


@pytest.mark.parametrize("dtype", DTYPES)
@given(case=conv_cases())
@settings(max_examples=30, deadline=None)
def test_gradients_match_naive_backward(dtype, case):
    y, (x, w, b) = fast(case, dtype, requires_grad=True)
    gy = randn(y.shape, seed=7)
    y.backward(gy.astype(dtype))
    _, geo = naive(case)
    gx, gw, gb = conv.conv2d_naive_backward(case["x"], case["weight"], gy, geo, case["groups"])
    tol = tolerance(dtype, case)
    tol["atol"] *= 4
    assert x.grad.dtype == w.grad.dtype == dtype
    assert w.grad.data.flags.c_contiguous            # the optimizer's one-sweep update needs it
    np.testing.assert_allclose(x.grad.data, gx, **tol)
    np.testing.assert_allclose(w.grad.data, gw, **tol)
    if b is not None:
        np.testing.assert_allclose(b.grad.data, gb, **tol)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("side", [6, 14])       # OH*OW = 36 and 196: both 1x1 strategies
def test_1x1_conv_for_short_and_long_outputs(groups, side):
    """A 1x1 conv runs image by image on views of x when OH*OW >= SHORT_OUTPUT,
    and on the images of a chunk copied side by side otherwise: both against
    the loops."""
    case = dict(x=randn((3, 4, side, side)), weight=randn((6, 4 // groups, 1, 1), seed=1),
                bias=None, stride=1, padding=0, dilation=1, groups=groups)
    _, geo = naive(case)
    op = conv.Conv2d(geo, groups)
    assert op.plain_gemm
    assert op._chunks(case["x"]) == ([(0, 3)] if side == 6 else [(0, 1), (1, 2), (2, 3)])
    x, w = minidl.Tensor(case["x"], requires_grad=True), minidl.Tensor(case["weight"],
                                                                      requires_grad=True)
    y = F.conv2d(x, w, groups=groups)
    np.testing.assert_allclose(y.data, conv.conv2d_naive(case["x"], case["weight"], None, geo,
                                                         groups), rtol=1e-10, atol=1e-10)
    gy = randn(y.shape, seed=2)
    y.backward(gy)
    gx, gw, _ = conv.conv2d_naive_backward(case["x"], case["weight"], gy, geo, groups)
    np.testing.assert_allclose(w.grad.data, gw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(x.grad.data, gx, rtol=1e-10, atol=1e-10)


def test_naive_backward_against_numerical_gradient():
    """The naive backward is an oracle only if it is right: check it too."""
    case = dict(x=randn((2, 4, 6, 5)), weight=randn((4, 2, 3, 2), seed=1), bias=None,
                stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    _, geo = naive(case)
    gy = randn((2, 4, geo.OH, geo.OW), seed=2)
    gx, gw, _ = conv.conv2d_naive_backward(case["x"], case["weight"], gy, geo, 2)
    for arr, grad in ((case["x"], gx), (case["weight"], gw)):
        numeric = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + 1e-6
            plus = (naive(case)[0] * gy).sum()
            arr[idx] = old - 1e-6
            minus = (naive(case)[0] * gy).sum()
            arr[idx] = old
            numeric[idx] = (plus - minus) / 2e-6
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------
# gradcheck (float64 central differences) of every option
# ----------------------------------------------------------------------------
GRADCHECK_CASES = {
    "plain":        ((2, 3, 5, 6), (4, 3, 3, 3), {}),
    "stride":       ((2, 2, 7, 6), (3, 2, 3, 2), dict(stride=2)),
    "stride pair":  ((1, 2, 7, 8), (3, 2, 2, 3), dict(stride=(2, 3))),
    "padding":      ((2, 2, 4, 5), (3, 2, 3, 3), dict(padding=1)),
    "padding pair": ((1, 2, 4, 5), (3, 2, 3, 3), dict(padding=(2, 1))),
    "same odd":     ((1, 2, 5, 5), (2, 2, 3, 3), dict(padding="same")),
    "same even":    ((1, 2, 5, 6), (2, 2, 2, 4), dict(padding="same")),
    "same dilated": ((1, 2, 6, 6), (2, 2, 2, 3), dict(padding="same", dilation=2)),
    "valid":        ((1, 2, 5, 6), (3, 2, 3, 2), dict(padding="valid")),
    "dilation":     ((1, 2, 7, 7), (2, 2, 3, 2), dict(dilation=(2, 3), padding=1)),
    "groups":       ((2, 4, 5, 5), (6, 2, 3, 3), dict(groups=2, padding=1)),
    "depthwise":    ((1, 3, 5, 5), (3, 1, 3, 3), dict(groups=3)),
    "1x1 gemm":     ((2, 4, 3, 4), (5, 4, 1, 1), {}),
    "1x1 groups":   ((2, 4, 3, 3), (4, 2, 1, 1), dict(groups=2)),
    "1x1 stride":   ((1, 3, 5, 5), (2, 3, 1, 1), dict(stride=2)),
    "all":          ((2, 4, 7, 6), (4, 2, 2, 3), dict(stride=(2, 1), padding=(1, 2),
                                                      dilation=(1, 2), groups=2)),
}


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no bias"])
@pytest.mark.parametrize("name", GRADCHECK_CASES)
def test_gradcheck(name, with_bias):
    x_shape, w_shape, kwargs = GRADCHECK_CASES[name]
    x = minidl.Tensor(randn(x_shape), requires_grad=True)
    w = minidl.Tensor(randn(w_shape, seed=1), requires_grad=True)
    if with_bias:
        b = minidl.Tensor(randn(w_shape[:1], seed=2), requires_grad=True)
        assert minidl.gradcheck(lambda x, w, b: F.conv2d(x, w, b, **kwargs), (x, w, b))
    else:
        assert minidl.gradcheck(lambda x, w: F.conv2d(x, w, **kwargs), (x, w))


@pytest.mark.parametrize("needs", ["x", "w", "b"])
def test_gradient_of_one_input_only(needs):
    """Backward skips the gradients nobody asked for and gets the others right."""
    case = dict(x=randn((2, 3, 6, 5)), weight=randn((4, 3, 3, 3), seed=1), bias=randn((4,), seed=2),
                stride=1, padding=1, dilation=1, groups=1)
    ts = [minidl.Tensor(case[k], requires_grad=(k[0] == needs))
          for k in ("x", "weight", "bias")]
    y = F.conv2d(*ts, padding=1)
    gy = randn(y.shape, seed=3)
    y.backward(gy)
    _, geo = naive(case)
    want = conv.conv2d_naive_backward(case["x"], case["weight"], gy, geo, 1)
    for t, g in zip(ts, want):
        if t.requires_grad:
            np.testing.assert_allclose(t.grad.data, g, rtol=1e-10, atol=1e-10)
        else:
            assert t.grad is None


# ----------------------------------------------------------------------------
# padding="same" and "valid" against explicit padding
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("k, d", [(2, 1), (3, 1), (4, 1), (4, 2), (5, 3)])
def test_same_padding_puts_the_extra_at_bottom_right(k, d):
    x, w = randn((1, 2, 7, 6)), randn((3, 2, k, k), seed=1)
    total = d * (k - 1)
    top = total // 2
    xpad = np.pad(x, ((0, 0), (0, 0), (top, total - top), (top, total - top)))
    y = F.conv2d(minidl.Tensor(x), minidl.Tensor(w), padding="same", dilation=d)
    want = F.conv2d(minidl.Tensor(xpad), minidl.Tensor(w), dilation=d)
    assert y.shape == x.shape[:1] + (3,) + x.shape[2:]
    np.testing.assert_allclose(y.data, want.data, rtol=1e-12, atol=1e-12)


def test_valid_is_no_padding():
    x, w = randn((1, 2, 6, 6)), randn((3, 2, 3, 3), seed=1)
    np.testing.assert_array_equal(F.conv2d(x, w, padding="valid").data, F.conv2d(x, w).data)


# ----------------------------------------------------------------------------
# im2col and col2im
# ----------------------------------------------------------------------------
@given(case=conv_cases(wide=True))
@settings(max_examples=60, deadline=None)
def test_im2col_matches_definition(case):
    geo = conv.conv_geometry(case["x"].shape, case["weight"].shape, case["stride"],
                             case["padding"], case["dilation"], case["groups"])
    x = case["x"].astype(np.float32)
    col = np.full((x.shape[1] * geo.kh * geo.kw, x.shape[0] * geo.OH * geo.OW), np.nan, np.float32)
    cols.im2col(x, col, *cols.im2col_args(geo))
    np.testing.assert_array_equal(col, cols.im2col_naive(x, geo))


@pytest.mark.parametrize("width", [cols.SHORT_ROW + 2, cols.SHORT_ROW + 3],
                         ids=["OW = SHORT_ROW: rows reused", "OW > SHORT_ROW: rows copied"])
@pytest.mark.parametrize("dilation", [1, 2, 5])
def test_im2col_on_each_side_of_short_row(width, dilation):
    """A 3x3 kernel at stride 1 (OW = width - 2 without dilation): kernel
    rows 1 and 2 reuse row 0's copies when OW <= SHORT_ROW, and not beyond;
    dilation 5 leaves no row to reuse (dh >= OH = 1)."""
    x = randn((2, 3, 2 * dilation + 1 if dilation == 5 else 9, width))
    geo = conv.conv_geometry(x.shape, (1, 3, 3, 3), dilation=(dilation, 1))
    col = np.full((27, 2 * geo.OH * geo.OW), np.nan)
    cols.im2col(x, col, *cols.im2col_args(geo))
    np.testing.assert_array_equal(col, cols.im2col_naive(x, geo))


@pytest.mark.parametrize("images", [1, 2, 17])
@given(data=st.data())
@settings(max_examples=15, deadline=None)
def test_col2im_matches_its_loops(images, data):
    """col2im equals col2im_naive bit for bit (both add each pixel's terms
    in (p, q) order), on drawn strides, paddings and dilations."""
    case = data.draw(conv_cases(images=images))
    _, geo = naive(case)
    x = case["x"]
    c = randn((x.shape[1] * geo.kh * geo.kw, images * geo.OH * geo.OW), seed=5)
    gx = np.full_like(x, np.nan)
    cols.col2im(c, gx, *cols.im2col_args(geo))
    np.testing.assert_array_equal(gx, cols.col2im_naive(c, x.shape, geo))


@pytest.mark.parametrize("images", [1, 2, 9])
@given(data=st.data())
@settings(max_examples=15, deadline=None)
def test_col2im_interleaved_matches_the_loops(images, data):
    """col2im_interleaved on the images-innermost layout, (K, L*N): the same
    bits as col2im_naive on the same entries laid out (K, N*L), at column
    stride 1 (the only one it takes) and drawn row strides."""
    case = data.draw(conv_cases(images=images))
    case["stride"] = (pair(case["stride"])[0], 1)
    _, geo = naive(case)
    x, L = case["x"], geo.OH * geo.OW
    c = randn((x.shape[1] * geo.kh * geo.kw, images * L), seed=6)          # (K, N*L)
    interleaved = np.ascontiguousarray(c.reshape(-1, images, L).transpose(0, 2, 1)).reshape(c.shape)
    gx = np.full_like(x, np.nan)
    cols.col2im_interleaved(interleaved, gx, *cols.im2col_args(geo))
    np.testing.assert_array_equal(gx, cols.col2im_naive(c, x.shape, geo))


def test_col2im_interleaved_refuses_a_column_stride():
    geo = conv.conv_geometry((4, 2, 9, 9), (3, 2, 3, 3), stride=(1, 2))
    col = np.zeros((2 * 9, geo.OH * geo.OW * 4))
    with pytest.raises(ValueError, match="column stride must be 1"):
        cols.col2im_interleaved(col, np.empty((4, 2, 9, 9)), *cols.im2col_args(geo))


@given(case=conv_cases())
@settings(max_examples=40, deadline=None)
def test_col2im_is_the_adjoint_of_im2col(case):
    """<im2col(x), c> = <x, col2im(c)> for all x, c defines col2im."""
    _, geo = naive(case)
    x = case["x"]
    c = randn((x.shape[1] * geo.kh * geo.kw, x.shape[0] * geo.OH * geo.OW), seed=5)
    gx = np.full_like(x, np.nan)
    cols.col2im(c, gx, *cols.im2col_args(geo))
    np.testing.assert_allclose((cols.im2col_naive(x, geo) * c).sum(), (x * gx).sum(), rtol=1e-12)


# ----------------------------------------------------------------------------
# the 1x1 GEMM path, chunking, the workspace
# ----------------------------------------------------------------------------
def test_1x1_conv_is_a_gemm_without_im2col(monkeypatch):
    def no_im2col(*args):
        raise AssertionError("a 1x1, stride-1, unpadded conv must not call im2col")
    monkeypatch.setattr(conv, "_im2col", no_im2col)
    monkeypatch.setattr(conv, "_col2im", no_im2col)
    x = minidl.Tensor(randn((3, 4, 5, 6)), requires_grad=True)
    w = minidl.Tensor(randn((6, 2, 1, 1), seed=1), requires_grad=True)
    y = F.conv2d(x, w, groups=2)
    want = np.concatenate([np.einsum("oc,nchw->nohw", w.data[3 * g:3 * g + 3, :, 0, 0],
                                     x.data[:, 2 * g:2 * g + 2]) for g in range(2)], axis=1)
    np.testing.assert_allclose(y.data, want, rtol=1e-12)
    y.backward(np.ones(y.shape))
    np.testing.assert_allclose(x.grad.data[:, :2], np.broadcast_to(
        w.data[:3, :, 0, 0].sum(0)[None, :, None, None], (3, 2, 5, 6)), rtol=1e-12)
    np.testing.assert_allclose(w.grad.data[:3, :, 0, 0], np.broadcast_to(
        x.data[:, :2].sum(axis=(0, 2, 3)), (3, 2)), rtol=1e-12)


@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(stride=2, groups=2), {}],
                         ids=["3x3", "strided groups", "short 1x1"])
def test_chunked_equals_unchunked(monkeypatch, kwargs):
    """A column buffer limit of a few images changes no result (chunks of 2,
    2 and 1 images, each chunk one GEMM)."""
    k = 1 if not kwargs else 3
    x, w, b = randn((5, 4, 7, 6), np.float32), randn((6, 4 // kwargs.get("groups", 1), k, k),
                                                     np.float32, 1), randn((6,), np.float32, 2)
    gy = randn((5, 6) + conv.conv_geometry(x.shape, w.shape, **kwargs)[-2:], np.float32, 3)

    def run():
        ts = [minidl.Tensor(a, requires_grad=True) for a in (x, w, b)]
        y = F.conv2d(*ts, **kwargs)
        y.backward(gy)
        return [y.data] + [t.grad.data for t in ts]

    whole = run()
    geo = conv.conv_geometry(x.shape, w.shape, **kwargs)
    per_image = 4 * geo.kh * geo.kw * geo.OH * geo.OW * x.itemsize      # C*kh*kw*OH*OW*itemsize
    monkeypatch.setattr(conv, "COL_CHUNK_BYTES", 2 * per_image)
    chunks = conv.Conv2d(geo, kwargs.get("groups", 1))._chunks(x)
    assert chunks == [(0, 2), (2, 4), (4, 5)]
    for got, want in zip(run(), whole):      # float32: chunks change the summation order
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("weight_grad", [True, False])
def test_small_columns_are_kept_for_grad_w(monkeypatch, weight_grad, workers):
    """Small columns (the whole batch's fit in COL_CHUNK_BYTES) and grad w
    needed: im2col runs once per chunk (one chunk per worker), in forward
    only, and backward (also a second one, with retain_graph) gets the naive
    gradients. Without grad w nothing is kept."""
    monkeypatch.setattr(parallel, "cpu_workers", lambda: workers)
    monkeypatch.setattr(conv, "SHARE_FROM_FLOPS", 0)     # shared out, however small
    calls = []
    real_im2col = conv._im2col
    monkeypatch.setattr(conv, "_im2col", lambda *a: calls.append(1) or real_im2col(*a))
    x, w = randn((3, 4, 7, 6)), randn((6, 2, 3, 3), seed=1)
    xt, wt = minidl.Tensor(x, requires_grad=True), minidl.Tensor(w, requires_grad=weight_grad)
    y = F.conv2d(xt, wt, stride=(1, 2), padding=1, groups=2)
    assert (y.creator.kept is not None) == weight_grad
    assert len(calls) == workers                         # chunks (0, 3), or (0, 2) and (2, 3)
    gy = randn(y.shape, seed=2)
    y.backward(gy, retain_graph=True)
    assert len(calls) == workers                         # backward reuses the columns or needs none
    geo = conv.conv_geometry(x.shape, w.shape, stride=(1, 2), padding=1, groups=2)
    gx, gw, _ = conv.conv2d_naive_backward(x, w, gy, geo, 2)
    np.testing.assert_allclose(xt.grad.data, gx, rtol=1e-10, atol=1e-10)
    if weight_grad:
        np.testing.assert_allclose(wt.grad.data, gw, rtol=1e-10, atol=1e-10)
        y.backward(gy)                                   # the kept columns serve again
        np.testing.assert_allclose(wt.grad.data, 2 * gw, rtol=1e-10, atol=1e-10)
        assert len(calls) == workers


def test_columns_are_not_kept_under_no_grad_or_when_chunked(monkeypatch):
    x, w = minidl.Tensor(randn((3, 2, 6, 6)), requires_grad=True), \
        minidl.Tensor(randn((4, 2, 3, 3), seed=1), requires_grad=True)
    with minidl.no_grad():
        assert F.conv2d(x, w).creator is None
    monkeypatch.setattr(conv, "COL_CHUNK_BYTES", 1)          # one image per chunk
    y = F.conv2d(x, w)
    assert y.creator.kept is None
    y.backward(np.ones(y.shape))
    geo = conv.conv_geometry(x.shape, w.shape)
    _, gw, _ = conv.conv2d_naive_backward(x.data, w.data, np.ones(y.shape), geo, 1)
    np.testing.assert_allclose(w.grad.data, gw, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("workers, recomputed", [
    (1, {"nothing": 2, "another conv": 3, "a second backward": 3}),
    # parts [(0, 1)] and [(1, 2), (2, 3)]: each worker's last chunk is in its thread's
    # workspace; another conv runs on this thread only, and backward's gcol takes both
    (2, {"nothing": 1, "another conv": 2, "a second backward": 3})])
@pytest.mark.parametrize("between", ["nothing", "another conv", "a second backward"])
def test_backward_takes_forwards_last_chunk_from_the_workspace_only_if_still_there(
        monkeypatch, between, workers, recomputed):
    """Three chunks of one image, grad w needed: the last chunk of each
    worker's forward is still in its thread's workspace, so backward
    computes only the others again -- unless another conv (or a first
    backward, retain_graph) used that workspace in between; the gradients
    are the loops' either way."""
    monkeypatch.setattr(parallel, "cpu_workers", lambda: workers)
    monkeypatch.setattr(conv, "SHARE_FROM_FLOPS", 0)     # shared out, however small
    calls = []
    real_im2col = conv._im2col
    monkeypatch.setattr(conv, "_im2col", lambda *a: calls.append(a[0].shape[0]) or real_im2col(*a))
    monkeypatch.setattr(conv, "COL_CHUNK_BYTES", 1)          # one image per chunk
    x, w = randn((3, 2, 6, 5)), randn((4, 2, 3, 3), seed=1)
    xt, wt = minidl.Tensor(x, requires_grad=True), minidl.Tensor(w, requires_grad=True)
    y = F.conv2d(xt, wt, padding=1)
    gy = randn(y.shape, seed=2)
    geo = conv.conv_geometry(x.shape, w.shape, padding=1)
    gx, gw, _ = conv.conv2d_naive_backward(x, w, gy, geo, 1)
    if between == "another conv":                            # fills the workspace with its own columns
        F.conv2d(minidl.Tensor(randn((1, 3, 7, 7), seed=3)), minidl.Tensor(randn((2, 3, 3, 3), seed=4)))
    if between == "a second backward":
        y.backward(gy, retain_graph=True)
        gx, gw = 2 * gx, 2 * gw
    calls.clear()
    y.backward(gy)
    assert len(calls) == recomputed[between]
    np.testing.assert_allclose(xt.grad.data, gx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(wt.grad.data, gw, rtol=1e-10, atol=1e-10)


@given(case=conv_cases(max_n=5), images_per_chunk=st.integers(1, 4), workers=st.integers(1, 3),
       weight_grad=st.booleans(), gw_transposed=st.booleans(), interleaved=st.booleans())
@settings(max_examples=60, deadline=None)
def test_any_chunking_matches_naive_backward(case, images_per_chunk, workers, weight_grad,
                                             gw_transposed, interleaved):
    """Chunks of 1-4 images (one GEMM each, images side by side) shared
    between 1-3 workers, columns kept (small, grad w needed) or recomputed,
    grad w as col @ gY.T or as gY @ col.T, grad x through col2im or
    (stride 1) col2im_interleaved: always the loops' gradients."""
    _, geo = naive(case)
    per_image = case["x"].shape[1] * geo.kh * geo.kw * geo.OH * geo.OW * 8    # float64 columns
    default, conv.COL_CHUNK_BYTES = conv.COL_CHUNK_BYTES, images_per_chunk * per_image
    default_gw, conv.GW_TRANSPOSED_BELOW = conv.GW_TRANSPOSED_BELOW, 10**9 if gw_transposed else 1
    default_il = conv.INTERLEAVED_BELOW_OW, conv.INTERLEAVED_FROM_IMAGES
    conv.INTERLEAVED_BELOW_OW, conv.INTERLEAVED_FROM_IMAGES = (10**9, 1) if interleaved else (0, 1)
    default_workers, parallel.cpu_workers = parallel.cpu_workers, lambda: workers
    default_share, conv.SHARE_FROM_FLOPS = conv.SHARE_FROM_FLOPS, 0     # shared out, however small
    try:
        x = minidl.Tensor(case["x"], requires_grad=True)
        w = minidl.Tensor(case["weight"], requires_grad=weight_grad)
        b = None if case["bias"] is None else minidl.Tensor(case["bias"], requires_grad=True)
        y = F.conv2d(x, w, b, **settings_of(case))
        gy = randn(y.shape, seed=9)
        y.backward(gy)
    finally:
        conv.COL_CHUNK_BYTES, conv.GW_TRANSPOSED_BELOW = default, default_gw
        conv.INTERLEAVED_BELOW_OW, conv.INTERLEAVED_FROM_IMAGES = default_il
        parallel.cpu_workers, conv.SHARE_FROM_FLOPS = default_workers, default_share
    gx, gw, gb = conv.conv2d_naive_backward(case["x"], case["weight"], gy, geo, case["groups"])
    np.testing.assert_allclose(y.data, naive(case)[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(x.grad.data, gx, rtol=1e-10, atol=1e-10)
    if weight_grad:
        assert w.grad.data.flags.c_contiguous
        np.testing.assert_allclose(w.grad.data, gw, rtol=1e-10, atol=1e-10)
    if b is not None:
        np.testing.assert_allclose(b.grad.data, gb, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("images, width, interleaved", [
    (conv.INTERLEAVED_FROM_IMAGES, conv.INTERLEAVED_BELOW_OW + 1, True),
    (conv.INTERLEAVED_FROM_IMAGES - 1, conv.INTERLEAVED_BELOW_OW + 1, False),
    (conv.INTERLEAVED_FROM_IMAGES, conv.INTERLEAVED_BELOW_OW + 2, False)],
    ids=["at both thresholds", "one image too few", "one column too many"])
@pytest.mark.parametrize("weight_grad", [True, False])
def test_grad_x_through_col2im_interleaved_at_the_real_thresholds(monkeypatch, images, width,
                                                                    interleaved, weight_grad):
    """A 3x3 conv at stride 1 (OW = width - 2) takes col2im_interleaved
    exactly when its chunk has enough images and short enough rows; the
    gradients are the loops' either way. (One worker: the whole batch is one
    chunk.)"""
    monkeypatch.setattr(parallel, "cpu_workers", lambda: 1)
    calls = []
    real = conv._col2im
    monkeypatch.setattr(conv, "_col2im", lambda *a, interleaved=False: calls.append(interleaved)
                        or real(*a, interleaved=interleaved))
    case = dict(x=randn((images, 4, 5, width)), weight=randn((6, 2, 3, 3), seed=1),
                bias=randn((6,), seed=2), stride=1, padding=0, dilation=1, groups=2)
    _, geo = naive(case)
    x = minidl.Tensor(case["x"], requires_grad=True)
    w = minidl.Tensor(case["weight"], requires_grad=weight_grad)
    y = F.conv2d(x, w, minidl.Tensor(case["bias"]), groups=2)
    gy = randn(y.shape, seed=3)
    y.backward(gy)
    assert calls == [interleaved]
    gx, gw, _ = conv.conv2d_naive_backward(case["x"], case["weight"], gy, geo, 2)
    np.testing.assert_allclose(x.grad.data, gx, rtol=1e-10, atol=1e-10)
    if weight_grad:
        np.testing.assert_allclose(w.grad.data, gw, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("out_channels", [conv.GW_TRANSPOSED_BELOW - 1, conv.GW_TRANSPOSED_BELOW])
def test_grad_w_on_both_sides_of_the_orientation_threshold(out_channels):
    """Both grad w products, at the real threshold, against the loops."""
    x = minidl.Tensor(randn((2, 2, 4, 4), seed=1), requires_grad=True)
    w = minidl.Tensor(randn((out_channels, 2, 3, 3), seed=2), requires_grad=True)
    y = F.conv2d(x, w, padding=1)
    gy = randn(y.shape, seed=3)
    y.backward(gy)
    geo = conv.conv_geometry(x.shape, w.shape, padding=1)
    gx, gw, _ = conv.conv2d_naive_backward(x.data, w.data, gy, geo, 1)
    assert w.grad.data.flags.c_contiguous
    np.testing.assert_allclose(w.grad.data, gw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(x.grad.data, gx, rtol=1e-10, atol=1e-10)


def test_workspace_shared_by_layers_is_not_corrupted():
    """Two convs of different sizes forward, then backward: each backward
    recomputes its own columns, whatever the other one left in the buffer."""
    x = minidl.Tensor(randn((2, 3, 9, 8)), requires_grad=True)
    w1 = minidl.Tensor(randn((4, 3, 3, 3), seed=1), requires_grad=True)
    w2 = minidl.Tensor(randn((5, 4, 2, 2), seed=2), requires_grad=True)
    h = F.conv2d(x, w1, padding=2)
    y = F.conv2d(h, w2, stride=2)
    gy = randn(y.shape, seed=3)
    y.backward(gy)
    g1 = conv.conv_geometry(x.shape, w1.shape, padding=2)
    g2 = conv.conv_geometry(h.shape, w2.shape, stride=2)
    gh, gw2, _ = conv.conv2d_naive_backward(h.data, w2.data, gy, g2, 1)
    gx, gw1, _ = conv.conv2d_naive_backward(x.data, w1.data, gh, g1, 1)
    for got, want in ((x.grad, gx), (w1.grad, gw1), (w2.grad, gw2)):
        np.testing.assert_allclose(got.data, want, rtol=1e-10, atol=1e-10)


def test_non_contiguous_input():
    x = randn((2, 6, 5, 3)).transpose(0, 1, 3, 2)          # (2, 6, 3, 5), not contiguous
    w = randn((2, 6, 2, 2), seed=1)
    geo = conv.conv_geometry(x.shape, w.shape, padding=1)
    np.testing.assert_allclose(F.conv2d(x, w, padding=1).data,
                               conv.conv2d_naive(x, w, None, geo, 1), rtol=1e-12)


def test_batch_of_zero_images():
    y = F.conv2d(np.zeros((0, 2, 5, 5)), np.zeros((3, 2, 3, 3)))
    assert y.shape == (0, 3, 3, 3)


# ----------------------------------------------------------------------------
# bad input: a clear ValueError/TypeError naming the argument and the shapes
# ----------------------------------------------------------------------------
X, W = np.zeros((2, 4, 6, 6)), np.zeros((8, 4, 3, 3))


@pytest.mark.parametrize("args, kwargs, words", [
    ((X, np.zeros((8, 4, 7, 3))), {}, ["kernel 7x3", "(2, 4, 6, 6)"]),
    ((X, np.zeros((8, 4, 3, 3))), dict(dilation=3), ["dilation", "7x7", "6x6"]),
    ((X, W), dict(stride=0), ["stride", "0"]),
    ((X, W), dict(stride=(1, -1)), ["stride"]),
    ((X, W), dict(dilation=0), ["dilation"]),
    ((X, W), dict(padding=-1), ["padding"]),
    ((X, W), dict(padding="full"), ["padding", "full"]),
    ((X, np.zeros((8, 2, 3, 3))), dict(groups=3), ["in_channels 4", "groups=3"]),
    ((np.zeros((2, 6, 6, 6)), np.zeros((8, 2, 3, 3))), dict(groups=3), ["out_channels 8", "groups=3"]),
    ((X, np.zeros((8, 2, 3, 3))), {}, ["(8, 2, 3, 3)", "(2, 4, 6, 6)", "channels"]),
    ((X, np.zeros((8, 4, 3, 3))), dict(groups=2), ["(8, 4, 3, 3)", "groups=2"]),
    ((X, W), dict(groups=0), ["groups"]),
    ((np.zeros((4, 6, 6)), W), {}, ["input", "4-D", "(4, 6, 6)"]),
    ((X, np.zeros((8, 4, 3))), {}, ["weight", "4-D", "(8, 4, 3)"]),
    ((X, W), dict(padding="same", stride=2), ["same", "stride"]),
    ((X, W, np.zeros(7)), {}, ["bias", "(8,)", "(7,)"]),
    ((X, W, np.zeros((8, 1))), {}, ["bias", "(8, 1)"]),
    ((X, W.astype(np.float32)), {}, ["dtype", "float32", "float64"]),
    ((X, W, np.zeros(8, np.float32)), {}, ["bias", "float32", "float64"]),
], ids=["kernel too big", "dilated kernel too big", "stride 0", "negative stride", "dilation 0",
        "negative padding", "unknown padding", "in not divisible", "out not divisible",
        "channel mismatch", "channel mismatch groups", "groups 0", "3-D input", "3-D weight",
        "same with stride", "bias length", "bias 2-D", "dtype mismatch", "bias dtype"])
def test_bad_input_raises_value_error(args, kwargs, words):
    with pytest.raises(ValueError) as info:
        F.conv2d(*args, **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert "conv2d" in str(info.value)


@pytest.mark.parametrize("kwargs", [dict(stride=1.5), dict(dilation="2"), dict(stride=(1, True))])
def test_bad_argument_type_raises_type_error(kwargs):
    with pytest.raises(TypeError, match="conv2d"):
        F.conv2d(X, W, **kwargs)


def test_three_numbers_for_a_pair_raise_value_error():
    with pytest.raises(ValueError, match="conv2d: padding must be an int or a pair"):
        F.conv2d(X, W, padding=(1, 2, 3))


def test_integer_input_raises_type_error():
    with pytest.raises(TypeError, match="float32 or float64"):
        F.conv2d(np.zeros((1, 4, 6, 6), np.int64), np.zeros((2, 4, 3, 3), np.int64))
