"""ops/parallel.py: conv2d's workers (parts of a batch run at once, each on
its own thread, with the BLAS limited to one thread meanwhile)."""
import threading

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController, threadpool_limits

import minidl
import minidl.nn.functional as F
from minidl.ops import conv, im2col, parallel


@pytest.fixture(autouse=True)
def share_out_small_convs(monkeypatch):
    """The convs here are small: share them out all the same (except where a
    test sets SHARE_FROM_FLOPS itself)."""
    monkeypatch.setattr(conv, "SHARE_FROM_FLOPS", 0)


def blas_threads():
    """Thread counts of the BLAS libraries minidl found (NumPy's among them);
    read afresh through threadpoolctl, by their file."""
    controlled = {lib.filepath for lib in parallel._blas_libraries()}
    return [lib.num_threads for lib in ThreadpoolController().select(user_api="blas").lib_controllers
            if lib.filepath in controlled]


def test_numpys_blas_is_among_the_controlled_libraries():
    """NumPy's own BLAS (the one matmul calls) is loaded with NumPy, so it is
    found; where it is the OpenBLAS of NumPy's wheel, its file says so."""
    files = [lib.filepath for lib in parallel._blas_libraries()]
    assert files
    wheel = [lib.filepath for lib in ThreadpoolController().select(user_api="blas").lib_controllers
             if "numpy" in lib.filepath]
    assert set(wheel) <= set(files)


def test_parts_run_at_once_on_their_own_threads_and_results_keep_their_order():
    """Three parts that each wait for the other two at a barrier: this
    deadlocks (BrokenBarrierError after the timeout) unless they run at once."""
    barrier = threading.Barrier(3, timeout=20)

    def work(part):
        barrier.wait()
        return part, threading.current_thread().name

    results = parallel.in_parallel(work, ["a", "b", "c"])
    assert [part for part, _ in results] == ["a", "b", "c"]
    assert results[0][1] == threading.current_thread().name
    assert [name.split("_")[0] for _, name in results[1:]] == ["minidl-worker1", "minidl-worker2"]


def test_blas_is_one_thread_while_parts_run_and_set_back_after():
    before = blas_threads()
    inside = parallel.in_parallel(lambda part: blas_threads(), [0, 1])
    assert inside == [[1] * len(before)] * 2
    assert blas_threads() == before


def test_a_parts_exception_is_raised_after_every_part_ended_and_blas_is_set_back():
    before, ended = blas_threads(), []

    def work(part):
        if part == 1:
            raise ValueError("part 1 failed")
        threading.Event().wait(0.2)                  # still running when part 1 has failed
        ended.append(part)

    with pytest.raises(ValueError, match="part 1 failed"):
        parallel.in_parallel(work, [0, 1, 2])
    assert sorted(ended) == [0, 2]
    assert blas_threads() == before


def test_nested_call_from_a_helper_runs_its_parts_in_turn():
    def outer(part):
        return parallel.in_parallel(lambda p: (p, threading.current_thread().name), [part, part + 1])

    (first, second) = parallel.in_parallel(outer, [0, 10])
    assert [p for p, _ in second] == [10, 11]
    assert len({name for _, name in second}) == 1    # both on helper 1, one after the other
    assert [p for p, _ in first] == [0, 1]


def test_workers_follow_the_blas_thread_count():
    """W is the BLAS's thread count: 1 under threadpool_limits(1), and then
    conv2d runs its batch as one part (one worker)."""
    with threadpool_limits(1, user_api="blas"):
        assert parallel.cpu_workers() == 1
        x = minidl.Tensor(np.ones((4, 2, 5, 5)))
        geo = conv.conv_geometry(x.shape, (3, 2, 3, 3))
        assert conv.Conv2d(geo, 1)._parts(x.data, np.ones((3, 2, 3, 3))) == [[(0, 4)]]
    assert parallel.cpu_workers() == min(blas_threads())


@pytest.mark.parametrize("N, workers, per_chunk, parts", [
    (8, 2, 8, [[(0, 4)], [(4, 8)]]),                      # small columns: one chunk per worker
    (8, 2, 3, [[(0, 2), (2, 4)], [(4, 6), (6, 8)]]),      # 3 per chunk -> 4 chunks, a multiple of W
    (5, 2, 8, [[(0, 3)], [(3, 5)]]),
    (1, 2, 8, [[(0, 1)]]),                                # one image: one worker
    (0, 2, 8, [[]]),                                      # no images: one empty part
    (3, 3, 1, [[(0, 1)], [(1, 2)], [(2, 3)]]),
    (8, 1, 3, [[(0, 3), (3, 6), (6, 8)]]),                # one worker: as before
])
def test_chunks_are_shared_out_evenly(monkeypatch, N, workers, per_chunk, parts):
    x = np.zeros((N, 2, 5, 5), np.float32)
    geo = conv.conv_geometry(x.shape, (3, 2, 3, 3))
    monkeypatch.setattr(conv, "COL_CHUNK_BYTES", per_chunk * 2 * 9 * 9 * 4)    # per_chunk images
    monkeypatch.setattr(parallel, "cpu_workers", lambda: workers)
    assert conv.Conv2d(geo, 1)._parts(x, np.ones((3, 2, 3, 3))) == parts


def test_a_small_conv_runs_as_one_part_on_this_thread_with_a_one_thread_blas(monkeypatch):
    """Under SHARE_FROM_FLOPS forward flops: one part whatever W (its
    chunks as for one worker), run on the calling thread with the BLAS at
    one thread; from it on, W parts. The gradients are the loops' either way."""
    x, w = np.ones((4, 2, 5, 5)), np.ones((3, 2, 3, 3))
    geo = conv.conv_geometry(x.shape, w.shape)
    flops = 2 * 4 * 3 * 2 * 9 * 3 * 3                    # 2*N*O*C_g*kh*kw*OH*OW
    monkeypatch.setattr(parallel, "cpu_workers", lambda: 2)
    monkeypatch.setattr(conv, "SHARE_FROM_FLOPS", flops + 1)
    op = conv.Conv2d(geo, 1)
    assert op._parts(x, w) == [[(0, 4)]] and op.small
    monkeypatch.setattr(conv, "SHARE_FROM_FLOPS", flops)
    assert op._parts(x, w) == [[(0, 2)], [(2, 4)]] and not op.small

    monkeypatch.setattr(conv, "SHARE_FROM_FLOPS", flops + 1)
    seen = []
    real_im2col = conv._im2col
    monkeypatch.setattr(conv, "_im2col", lambda *a: seen.append(
        (threading.current_thread() is threading.main_thread(), blas_threads())) or real_im2col(*a))
    rng = np.random.default_rng(3)
    xv, wv, gy = rng.standard_normal(x.shape), rng.standard_normal(w.shape), rng.standard_normal((4, 3, 3, 3))
    xt, wt = minidl.Tensor(xv, requires_grad=True), minidl.Tensor(wv, requires_grad=True)
    F.conv2d(xt, wt).backward(gy)
    assert seen == [(True, [1] * len(blas_threads()))]   # one im2col, kept for grad w
    gx, gw, _ = conv.conv2d_naive_backward(xv, wv, gy, geo, 1)
    np.testing.assert_allclose(xt.grad.data, gx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(wt.grad.data, gw, rtol=1e-10, atol=1e-10)


def test_numba_loops_release_the_gil():
    for kernel in (im2col.im2col, im2col.col2im, im2col.col2im_interleaved, im2col.images_last):
        assert kernel.targetoptions.get("nogil") is True


def test_conv_with_two_workers_matches_one_worker_exactly_in_float64_forward(monkeypatch):
    """Each image's output comes from the same GEMM row of the same columns
    whichever worker computes it; grad w sums the workers' parts, so it
    agrees to rounding."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((6, 3, 9, 9)), rng.standard_normal((4, 3, 3, 3))

    def run(workers):
        monkeypatch.setattr(parallel, "cpu_workers", lambda: workers)
        xt, wt = minidl.Tensor(x, requires_grad=True), minidl.Tensor(w, requires_grad=True)
        y = F.conv2d(xt, wt, padding=1)
        y.backward(np.ones(y.shape))
        return y.data, xt.grad.data, wt.grad.data

    (y1, gx1, gw1), (y2, gx2, gw2) = run(1), run(2)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(gx1, gx2)
    np.testing.assert_allclose(gw1, gw2, rtol=1e-12)


def test_backward_takes_forwards_chunks_when_the_worker_count_changed_between(monkeypatch):
    """Forward on two workers keeps its columns by chunk; backward, run after
    the BLAS was set to one thread, still finds them (and the loops' grads)."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((4, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3))
    xt, wt = minidl.Tensor(x, requires_grad=True), minidl.Tensor(w, requires_grad=True)
    monkeypatch.setattr(parallel, "cpu_workers", lambda: 2)
    y = F.conv2d(xt, wt)
    assert sorted(y.creator.kept) == [0, 2]
    monkeypatch.setattr(parallel, "cpu_workers", lambda: 1)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    gx, gw, _ = conv.conv2d_naive_backward(x, w, gy, conv.conv_geometry(x.shape, w.shape), 1)
    np.testing.assert_allclose(xt.grad.data, gx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(wt.grad.data, gw, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("workers", [1, 2])
def test_memory_stays_near_one_chunk_of_columns_per_worker(monkeypatch, workers):
    """Columns of one image per chunk (COL_CHUNK_BYTES lowered): a second
    forward+backward allocates far less than the whole batch's columns
    (8 x 576 KiB), and each worker's workspace holds one chunk of them."""
    import tracemalloc
    monkeypatch.setattr(parallel, "cpu_workers", lambda: workers)
    per_image = 16 * 9 * 32 * 32 * 4                       # C*kh*kw*OH*OW*itemsize: 576 KiB
    monkeypatch.setattr(conv, "COL_CHUNK_BYTES", per_image)
    rng = np.random.default_rng(0)
    x = minidl.Tensor(rng.standard_normal((8, 16, 32, 32)).astype(np.float32), requires_grad=True)
    w = minidl.Tensor(rng.standard_normal((16, 16, 3, 3)).astype(np.float32), requires_grad=True)

    def step():
        F.conv2d(x, w, padding=1).sum().backward()
        x.grad = w.grad = None

    parallel.in_parallel(lambda part: conv._workspace.__dict__.clear(), list(range(workers)))
    step()                                                # each worker's workspace is made here
    tracemalloc.start()
    try:
        step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    arrays = 4 * x.data.nbytes            # y, the grad of y (ones), gx, one more of their size
    assert peak < arrays + per_image < 8 * per_image
    sizes = parallel.in_parallel(lambda part: conv._workspace.buf.nbytes, list(range(workers)))
    assert sizes == [per_image] * workers


@pytest.mark.parametrize("M, K, N", [
    (3, 4, 5),                # small: on this thread, one-thread BLAS
    (300, 200, 40),           # rows shared out
    (8, 300, 900),            # columns shared out
    (1, 5000, 1),             # big K, a 1x1 product
])
@pytest.mark.parametrize("transposed", [False, True])
def test_matmul_matches_the_sum_of_products(M, K, N, transposed):
    """parallel.matmul against the closed form sum_k a[i, k] b[k, j] (float64
    einsum, no BLAS), with b also as a transposed view."""
    rng = np.random.default_rng(M + K + N)
    a = rng.standard_normal((M, K))
    b = rng.standard_normal((N, K)).T if transposed else rng.standard_normal((K, N))
    want = np.einsum("ik,kj->ij", a, b)
    before = blas_threads()
    got = parallel.matmul(a, b)
    assert got.shape == (M, N) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    assert blas_threads() == before


def test_matmul_leaves_other_operands_to_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))
    np.testing.assert_array_equal(parallel.matmul(a, b), a @ b)          # a batch of matrices
    np.testing.assert_array_equal(parallel.matmul(a[0, 0], b), a[0, 0] @ b)   # 1-D
    with pytest.raises(ValueError):
        parallel.matmul(a[0], a[0])                                      # (3, 4) @ (3, 4)
    mixed = parallel.matmul(a[0].astype(np.float32), b)
    assert mixed.dtype == np.float64


def test_linear_layer_gradients_through_the_shared_out_matmul():
    """A Linear big enough to be shared out (7.7 MFLOP each product: rows for
    y and grad x, columns... of grad W, whichever is longer) gives, against
    the closed forms as einsums: y = x W^T + b, gx = gy W, gW = gy^T x,
    gb = sum over the batch of gy."""
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((64, 300)), rng.standard_normal((200, 300)), rng.standard_normal(200)
    gy = rng.standard_normal((64, 200))
    xt, wt, bt = (minidl.Tensor(v, requires_grad=True) for v in (x, w, b))
    y = F.linear(xt, wt, bt)
    y.backward(gy)
    np.testing.assert_allclose(y.data, np.einsum("ni,oi->no", x, w) + b, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(xt.grad.data, np.einsum("no,oi->ni", gy, w), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(wt.grad.data, np.einsum("no,ni->oi", gy, x), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(bt.grad.data, gy.sum(axis=0), rtol=1e-10, atol=1e-10)
