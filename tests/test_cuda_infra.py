"""minidl.cuda and the CPU host harness, proved on the test kernels of
tests/kernels/harness.cu against NumPy (no GPU needed)."""
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minidl import backend, cuda
from minidl.testing import cuda_host

HARNESS = Path(__file__).parent / "kernels" / "harness.cu"
DTYPES = [np.float32, np.float64]


def run(kernel, n, args, dtype):
    with cuda.host_launcher() as launcher:
        cuda.launch(HARNESS, kernel, n, args, dtype)
    return launcher


# ---------------------------------------------------------------------------
# finding and parsing sources
# ---------------------------------------------------------------------------
def test_kernel_dir_is_the_repo_kernels_folder_in_a_source_checkout():
    assert cuda.kernel_dir() == Path(cuda.__file__).resolve().parent.parent / "kernels"
    assert all(p.suffix == ".cu" and p.parent == cuda.kernel_dir() for p in cuda.kernel_files())


def test_load_source_by_path_and_missing_file():
    src = cuda.load_source(HARNESS)
    assert {"saxpy", "whoami", "strided_gather", "echo", "device_functions"} <= set(src.kernels)
    assert cuda.load_source(str(HARNESS)) is src          # parsed once
    with pytest.raises(FileNotFoundError, match="nope.cu"):
        cuda.load_source("nope.cu")


def test_edited_source_is_parsed_again(tmp_path):
    path = tmp_path / "k.cu"
    path.write_text('extern "C" __global__ void a(int n) {}')
    assert list(cuda.load_source(path).kernels) == ["a"]
    path.write_text('extern "C" __global__ void b(long long n) {}')
    os.utime(path, ns=(1, 10**18))
    assert list(cuda.load_source(path).kernels) == ["b"]


def test_parse_kernels_reads_qualifiers_and_skips_comments():
    text = """
    // extern "C" __global__ void commented(int n) {}
    /* extern "C" __global__ void also_commented(int n) {} */
    extern "C"   __global__ void
    k(const scalar_t *__restrict__ x, scalar_t* y,
      const int n, long long   total, const long long* idx, void* unused_never) {}
    """
    with pytest.raises(ValueError, match="'void'"):
        cuda.parse_kernels(text)
    kernels = cuda.parse_kernels(text.replace(", void* unused_never", ""))
    assert list(kernels) == ["k"]
    P = cuda.Param
    assert kernels["k"].params == (
        P("x", "scalar_t", True, True), P("y", "scalar_t", True, False),
        P("n", "int", False, False), P("total", "long long", False, False),
        P("idx", "long long", True, True))
    assert cuda.parse_kernels('extern "C" __global__ void e(void) {}')["e"].params == ()


@pytest.mark.parametrize("text, match", [
    ('__global__ void f(int n) {}', "only 0"),                       # not extern "C"
    ('extern "C" __global__ void f(unsigned n) {}', "unsigned"),
    ('extern "C" __global__ void f(float** p) {}', "cannot read"),
    ('extern "C" __global__ void f(size_t n) {}', "size_t"),
])
def test_parse_kernels_rejects_what_launch_cannot_check(text, match):
    with pytest.raises(ValueError, match=match):
        cuda.parse_kernels(text, "f.cu")


# ---------------------------------------------------------------------------
# grids
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("n, grid", [(1, 1), (256, 1), (257, 2), (256 * 1000, 1000),
                                     (2**31 + 1, cuda.MAX_BLOCKS), (2**40, cuda.MAX_BLOCKS)])
def test_launch_config(n, grid):
    assert cuda.launch_config(n) == (grid, 256)


def test_whoami_shows_the_grid_stride_mapping(monkeypatch):
    """With the grid capped at 3 blocks, element i belongs to global thread i % 768."""
    monkeypatch.setattr(cuda, "MAX_BLOCKS", 3)
    n = 3 * 256 * 2 + 17
    who = np.full((n, 4), -1, np.int32)
    run("whoami", n, (np.int64(n), who), np.float32)
    i = np.arange(n)
    np.testing.assert_array_equal(who, np.stack([(i % 768) // 256, i % 256,
                                                 np.full(n, 3), np.full(n, 256)], axis=1))


# ---------------------------------------------------------------------------
# exact results against NumPy
# ---------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3000), max_blocks=st.sampled_from([1, 2, 7, cuda.MAX_BLOCKS]),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
def test_saxpy_matches_numpy_exactly(n, max_blocks, dtype, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    a = dtype(rng.standard_normal())
    expected = a * x + y                      # NumPy: rounds the product, then the sum
    old, cuda.MAX_BLOCKS = cuda.MAX_BLOCKS, max_blocks
    try:
        run("saxpy", n, (np.int64(n), a, x, y), dtype)
    finally:
        cuda.MAX_BLOCKS = old
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_c_type_arrives_intact(dtype):
    outs = [np.zeros(1, t) for t in (np.int32, np.int64, np.float32, np.float64, dtype)]
    values = (np.int32(-2**31), np.int64(2**40 + 3), np.float32(1 / 3), np.float64(1 / 3),
              dtype(-2.5e-3))
    run("echo", 1, values + tuple(outs), dtype)
    for out, value in zip(outs, values):
        assert out[0] == value and out.dtype == value.dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_device_functions_of_the_header(dtype):
    x = np.linspace(0.05, 4.0, 37).astype(dtype)
    out = np.zeros((x.size, 11), dtype)
    run("device_functions", x.size, (np.int64(x.size), x, out), dtype)
    half = dtype(0.5)
    exact = np.stack([np.maximum(x, half), np.minimum(x, half), np.fmax(x, half),
                      np.fmin(x, half), np.full_like(x, -np.inf)], axis=1)
    np.testing.assert_array_equal(out[:, :5], exact)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(out[:, 5:10], np.stack(
        [np.exp(x), x ** 0.75, np.sqrt(x), np.log(x), 1 / np.sqrt(x)], axis=1), rtol=tol)
    np.testing.assert_array_equal(out[:, 10], np.maximum(np.arange(x.size), 3))


def test_offsets_past_2_to_the_32_elements(tmp_path):
    """x[i * stride] with i * stride > 2^32: 64-bit index arithmetic end to end.

    x is a 16 GiB sparse file mapped read-only: only the pages touched exist.
    A 32-bit offset would wrap and read a zero (or fault).
    """
    n, stride = 3, 2**31 + 5
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as f:
        f.truncate((stride * (n - 1) + 1) * 4)
        for i in range(n):
            f.seek(i * stride * 4)
            f.write(np.float32(i + 1.5).tobytes())
    x = np.memmap(path, np.float32, mode="r")
    y = np.zeros(n, np.float32)
    run("strided_gather", n, (np.int64(n), np.int64(stride), x, y), np.float32)
    np.testing.assert_array_equal(y, [1.5, 2.5, 3.5])
    del x


# ---------------------------------------------------------------------------
# the launcher switch
# ---------------------------------------------------------------------------
def test_use_gpu_path_follows_host_launcher_per_thread():
    x = np.zeros(3)
    assert not cuda.use_gpu_path(x)
    seen = []
    with cuda.host_launcher() as outer:
        assert cuda.use_gpu_path(x)
        with cuda.host_launcher() as inner:
            assert inner is not outer and cuda.use_gpu_path(x)
        assert cuda._state.launcher is outer
        t = threading.Thread(target=lambda: seen.append(cuda.use_gpu_path(x)))
        t.start()
        t.join()
    assert seen == [False] and not cuda.use_gpu_path(x)


def test_launched_counter_and_empty_launch():
    x, y = np.ones(5, np.float32), np.ones(5, np.float32)
    with cuda.host_launcher() as launcher:
        cuda.launch(HARNESS, "saxpy", 0, (np.int64(0), np.float32(1), x, y), np.float32)
        assert not launcher.launched                 # n = 0: nothing runs
        cuda.launch(HARNESS, "saxpy", 5, (np.int64(5), np.float32(1), x, y), np.float32)
        cuda.launch(HARNESS, "saxpy", 5, (np.int64(5), np.float32(1), x, y), np.float32)
    assert launcher.launched == {("harness.cu", "saxpy"): 2}
    np.testing.assert_array_equal(y, 3)
    with pytest.raises(ValueError, match="n_threads"):
        cuda.launch(HARNESS, "saxpy", -1, (np.int64(0), np.float32(1), x, y), np.float32)
    with pytest.raises(TypeError):
        cuda.launch(HARNESS, "saxpy", 5.0, (np.int64(5), np.float32(1), x, y), np.float32)


def test_default_launcher_without_gpu_says_so_in_one_line():
    x, y = np.ones(5, np.float32), np.ones(5, np.float32)
    args = (np.int64(5), np.float32(1), x, y)
    if backend.cuda_is_available():
        with pytest.raises(TypeError, match="CuPy arrays"):
            cuda.launch(HARNESS, "saxpy", 5, args, np.float32)
        return
    with pytest.raises(RuntimeError, match="host_launcher") as info:
        cuda.launch(HARNESS, "saxpy", 5, args, np.float32)
    assert "\n" not in str(info.value) and "saxpy" in str(info.value)


class FakeCupyArray:
    """Quacks like a cupy.ndarray for the argument checks (is_cupy_array looks at the module)."""
    __module__ = "cupy._core.core"

    def __init__(self, a):
        self.dtype, self.flags, self.shape, self.strides = a.dtype, a.flags, a.shape, a.strides


class FakeRawModule:
    """Records what the CuPy launcher compiles and launches."""
    made, calls = [], []

    def __init__(self, code, options):
        self.made.append((code, options))

    def get_function(self, name):
        return lambda grid, block, args: self.calls.append((name, grid, block, args))


def test_cupy_launcher_compiles_once_per_dtype_and_passes_the_grid(monkeypatch):
    fake_cupy = type("FakeCupy", (), {"RawModule": FakeRawModule})
    monkeypatch.setattr(backend, "_load_cupy", lambda: (fake_cupy, None))
    monkeypatch.setattr(cuda, "_cupy_launcher", cuda.CupyLauncher())
    FakeRawModule.made.clear()
    FakeRawModule.calls.clear()
    for dtype, n in [(np.float32, 1000), (np.float32, 10), (np.float64, 300 * 256 + 1)]:
        x = FakeCupyArray(np.zeros(n, dtype))
        args = (np.int64(n), dtype(2), x, x)
        cuda.launch(HARNESS, "saxpy", n, args, dtype)
    text = HARNESS.read_text()
    assert FakeRawModule.made == [(text, ("-Dscalar_t=float",)), (text, ("-Dscalar_t=double",))]
    assert [c[:3] for c in FakeRawModule.calls] == [
        ("saxpy", (4,), (256,)), ("saxpy", (1,), (256,)), ("saxpy", (301,), (256,))]
    assert FakeRawModule.calls[0][3][:2] == (np.int64(1000), np.float32(2))
    with pytest.raises(TypeError, match="argument 2 'x' is a NumPy array; the GPU launcher"):
        cuda.launch(HARNESS, "saxpy", 5, (np.int64(5), np.float32(1), np.ones(5, np.float32),
                                          FakeCupyArray(np.ones(5, np.float32))), np.float32)


@pytest.mark.skipif(not backend.cuda_is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_and_host_harness_agree(dtype):
    import cupy as cp
    rng = np.random.default_rng(0)
    n = 100_000
    x, y = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    x_gpu, y_gpu = cp.asarray(x), cp.asarray(y)
    cuda.launch(HARNESS, "saxpy", n, (np.int64(n), dtype(3), x_gpu, y_gpu), dtype)
    run("saxpy", n, (np.int64(n), dtype(3), x, y), dtype)
    np.testing.assert_allclose(y_gpu.get(), y, rtol=1e-6)


# ---------------------------------------------------------------------------
# what the harness refuses, and its build cache
# ---------------------------------------------------------------------------
def test_shared_memory_kernels_are_refused(tmp_path):
    path = tmp_path / "reduce.cu"
    path.write_text('extern "C" __global__ void r(scalar_t* x) {\n'
                    '    __shared__ scalar_t s[256];\n    __syncthreads();\n}\n')
    with cuda.host_launcher(), pytest.raises(NotImplementedError, match="__shared__"):
        cuda.launch(path, "r", 1, (np.zeros(1, np.float32),), np.float32)


def test_compile_error_names_the_cu_file_and_line(tmp_path):
    path = tmp_path / "typo.cu"
    path.write_text('extern "C" __global__ void t(scalar_t* x) {\n    x[0] = undefined_name;\n}\n')
    with cuda.host_launcher(), pytest.raises(RuntimeError, match=r"typo\.cu:2"):
        cuda.launch(path, "t", 1, (np.zeros(1, np.float32),), np.float32)


def test_builds_are_cached_by_content():
    src = cuda.load_source(HARNESS)
    first = cuda_host.build(src, np.float32)
    mtime = first.stat().st_mtime_ns
    assert cuda_host.build(src, np.float32) == first and first.stat().st_mtime_ns == mtime
    assert cuda_host.build(src, np.float64) != first
    assert first.parent == cuda_host.cache_dir()
