"""cuda.launch checks every argument against the kernel's C signature.

CuPy passes a Python int as 64 bits and a Python float as a double; a kernel
that takes ``int`` or ``float`` then reads garbage on the GPU, silently.
These tests show each such mismatch raises TypeError before any launch (no
launcher is involved), and that every kernel of kernels/*.cu has a signature
the check understands -- and that the compiler agrees with the parse.
"""
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minidl import cuda
from minidl.testing import cuda_host

HARNESS = Path(__file__).parent / "kernels" / "harness.cu"
SCALARS = {"int": np.int32, "long long": np.int64, "float": np.float32, "double": np.float64}


def saxpy_args(n=4, dtype=np.float32):
    return [np.int64(n), dtype(2), np.ones(n, dtype), np.ones(n, dtype)]


def echo_args(dtype=np.float32):
    return [np.int32(1), np.int64(2), np.float32(3), np.float64(4), dtype(5),
            np.zeros(1, np.int32), np.zeros(1, np.int64), np.zeros(1, np.float32),
            np.zeros(1, np.float64), np.zeros(1, dtype)]


def test_correct_arguments_pass():
    for dtype in (np.float32, np.float64):
        cuda.check_args(cuda.load_source(HARNESS).kernels["echo"], echo_args(dtype), np.dtype(dtype))


@pytest.mark.parametrize("kernel, index, value, says", [
    # scalar arguments must be NumPy scalars of exactly the C type
    ("echo", 0, 1, "argument 0 'i' (int) needs np.int32, got Python int"),
    ("echo", 0, np.int64(1), "argument 0 'i' (int) needs np.int32, got numpy int64"),
    ("echo", 1, np.int32(1), "argument 1 'l' (long long) needs np.int64, got numpy int32"),
    ("echo", 1, 2**40, "needs np.int64, got Python int"),
    ("echo", 2, 1.0, "argument 2 'f' (float) needs np.float32, got Python float"),
    ("echo", 2, np.float64(1), "needs np.float32, got numpy float64"),
    ("echo", 3, np.float32(1), "argument 3 'd' (double) needs np.float64, got numpy float32"),
    ("echo", 4, np.float64(1), "argument 4 's' (scalar_t) needs np.float32, got numpy float64"),
    ("echo", 4, np.ones(1, np.float32), "needs np.float32, got an array of float32 (1,)"),
    ("echo", 0, True, "needs np.int32, got Python bool"),
    # pointer arguments must be arrays of the pointee type
    ("saxpy", 2, np.ones(4, np.float64),
     "argument 2 'x' (const scalar_t*) needs an array of float32, got an array of float64"),
    ("saxpy", 3, np.ones(4, np.int32), "'y' (scalar_t*) needs an array of float32, got an array of int32"),
    ("saxpy", 2, [1.0, 2.0], "needs an array of float32, got list"),
    ("saxpy", 2, np.float32(1), "needs an array of float32, got float32"),
    ("echo", 5, np.zeros(1, np.int64), "'oi' (int*) needs an array of int32, got an array of int64"),
    ("echo", 6, np.zeros(1, np.int32), "'ol' (long long*) needs an array of int64, got an array of int32"),
    ("echo", 7, np.zeros(1, np.float64), "'of' (float*) needs an array of float32"),
])
def test_mismatched_argument_raises_type_error(kernel, index, value, says):
    args = saxpy_args() if kernel == "saxpy" else echo_args()
    args[index] = value
    with pytest.raises(TypeError, match=re.escape(says)) as info:
        cuda.launch(HARNESS, kernel, 4, args, np.float32)
    assert str(info.value).startswith(f"kernel {kernel!r} argument {index} ")


def test_count_dtype_contiguity_and_name_are_checked():
    with pytest.raises(TypeError, match=r"takes 4 arguments \(long long n, scalar_t a, "
                                        r"const scalar_t\* x, scalar_t\* y\), got 3"):
        cuda.launch(HARNESS, "saxpy", 4, saxpy_args()[:3], np.float32)
    with pytest.raises(TypeError, match="float32 or float64, got float16"):
        cuda.launch(HARNESS, "saxpy", 4, saxpy_args(), np.float16)
    args = saxpy_args(8)
    args[2] = np.ones(16, np.float32)[::2]
    with pytest.raises(ValueError, match="'x' .* needs a C-contiguous array"):
        cuda.launch(HARNESS, "saxpy", 8, args, np.float32)
    with pytest.raises(ValueError, match="has no kernel 'saxpi'.*'saxpy'"):
        cuda.launch(HARNESS, "saxpi", 4, saxpy_args(), np.float32)


# ---------------------------------------------------------------------------
# property: parse(render(signature)) == signature, and any one wrong argument
# of a random signature is caught
# ---------------------------------------------------------------------------
params = st.lists(st.tuples(st.sampled_from(sorted(cuda.C_TYPES)), st.booleans(), st.booleans(),
                            st.booleans()), max_size=8)


def render(spec):
    """C text of a kernel with parameters spec = [(ctype, pointer, const, restrict)]."""
    decls = []
    for i, (ctype, pointer, const, restrict) in enumerate(spec):
        decls.append(("const " if const else "") + ctype + (" *" if pointer else " ")
                     + ("__restrict__ " if restrict and pointer else "") + f"p{i}")
    return 'extern "C" __global__ void k(' + ",\n   ".join(decls) + ") {}"


def good_value(ctype, pointer, dtype):
    t = dtype if ctype == "scalar_t" else SCALARS[ctype]
    return np.zeros(3, t) if pointer else t(1)


def wrong_values(ctype, pointer, dtype):
    right = np.dtype(dtype if ctype == "scalar_t" else SCALARS[ctype])
    others = [t for t in SCALARS.values() if np.dtype(t) != right]
    if pointer:
        return [np.zeros(3, t) for t in others] + [right.type(1), [0, 0, 0]]
    return [t(1) for t in others] + [1, 1.0, np.zeros(1, right)]


@settings(max_examples=60, deadline=None)
@given(spec=params, dtype=st.sampled_from([np.float32, np.float64]), data=st.data())
def test_random_signatures_parse_back_and_check(spec, dtype, data):
    kernel = cuda.parse_kernels(render(spec))["k"]
    assert [(p.name, p.ctype, p.pointer, p.const) for p in kernel.params] == [
        (f"p{i}", c, ptr, const and ptr) for i, (c, ptr, const, _) in enumerate(spec)]
    args = [good_value(c, ptr, dtype) for c, ptr, _, _ in spec]
    cuda.check_args(kernel, args, np.dtype(dtype))
    if spec:
        i = data.draw(st.integers(0, len(spec) - 1))
        args[i] = data.draw(st.sampled_from(wrong_values(spec[i][0], spec[i][1], dtype)))
        with pytest.raises(TypeError, match=f"argument {i} 'p{i}'"):
            cuda.check_args(kernel, args, np.dtype(dtype))


# ---------------------------------------------------------------------------
# every kernel of kernels/*.cu (and the test kernels)
# ---------------------------------------------------------------------------
SOURCES = cuda.kernel_files() + [HARNESS]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_kernel_file_follows_the_contract(path):
    src = cuda.load_source(path)           # parses; unsupported types raise ValueError
    assert src.kernels, f"{path.name} declares no extern \"C\" __global__ kernel"
    code = cuda._COMMENT_RE.sub(" ", src.text)
    assert "#include" not in code, f"{path.name}: NVRTC rejects std headers; include nothing"
    assert "gridDim.x" in code, f"{path.name}: kernels must use a grid-stride loop"
    for k in src.kernels.values():
        assert any(p.ctype == "long long" and not p.pointer for p in k.params), (
            f"{path.name}: kernel {k.name!r} takes no 'long long' count; the grid-stride loop "
            f"must run over a 64-bit total")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_compiler_agrees_with_the_parsed_signatures(path):
    """The host build static_asserts each parsed signature against the compiler's."""
    src = cuda.load_source(path)
    assert cuda_host.build(src, np.float32).exists()
    assert "static_assert" in cuda_host.host_source(src)


def test_a_wrong_parse_would_fail_the_build(tmp_path):
    src = cuda.load_source(HARNESS)
    saxpy = src.kernels["saxpy"]
    wrong = cuda.Kernel("saxpy", (cuda.Param("n", "int", False, False),) + saxpy.params[1:])
    bad = cuda.KernelSource(src.path, src.text, {"saxpy": wrong})
    with pytest.raises(RuntimeError, match="parsed another signature"):
        cuda_host.build(bad, np.float32)
