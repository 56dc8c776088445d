"""minidl.data.transforms against independent expectations (slices, np.rot90,
per-row shifts, PIL's resize, closed forms) and their reproducibility."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minidl
from minidl.data import make_augmentation_grid, transforms as T


def image(c=3, h=8, w=8, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).random((c, h, w)).astype(dtype)


def rng(seed=0):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------
# mirroring and cropping
# ----------------------------------------------------------------------------
def test_flip_is_reversed_columns():
    x = image(h=5, w=7)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1)(x, rng()), x[..., ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=0)(x, rng()), x)
    r = rng(1)
    flips = [T.RandomHorizontalFlip(0.5)(x, r)[0, 0, 0] == x[0, 0, -1] for _ in range(400)]
    assert 0.4 < np.mean(flips) < 0.6


@settings(max_examples=40, deadline=None)
@given(c=st.sampled_from([1, 3]), H=st.integers(1, 9), W=st.integers(1, 9),
       h=st.integers(1, 9), w=st.integers(1, 9), padding=st.integers(0, 3),
       seed=st.integers(0, 1000), fill=st.sampled_from([0.0, -0.5]))
def test_random_crop_is_a_window_of_the_padded_image(c, H, W, h, w, padding, seed, fill):
    x = 1 + np.arange(c * H * W, dtype=np.float32).reshape(c, H, W)   # no fill value inside
    t = T.RandomCrop((h, w), padding=padding, fill=fill)
    if h > H + 2 * padding or w > W + 2 * padding:
        with pytest.raises(ValueError, match=rf"smaller than the crop \({h}x{w}\)"):
            t(x, rng(seed))
        return
    out = t(x, rng(seed))
    padded = np.full((c, H + 2 * padding, W + 2 * padding), fill, np.float32)
    padded[:, padding:padding + H, padding:padding + W] = x
    windows = [(top, left) for top in range(H + 2 * padding - h + 1)
               for left in range(W + 2 * padding - w + 1)
               if np.array_equal(padded[:, top:top + h, left:left + w], out)]
    assert out.shape == (c, h, w) and out.dtype == x.dtype and windows


def test_random_crop_reaches_every_offset():
    x = np.arange(36, dtype=np.float32).reshape(1, 6, 6)
    r = rng(2)
    corners = {(int(o[0, 0, 0]) // 6, int(o[0, 0, 0]) % 6)
               for o in (T.RandomCrop(4)(x, r) for _ in range(200))}
    assert corners == {(i, j) for i in range(3) for j in range(3)}


def test_center_crop_is_the_central_slice():
    x = image(h=9, w=10)
    np.testing.assert_array_equal(T.CenterCrop((5, 4))(x), x[:, 2:7, 3:7])
    np.testing.assert_array_equal(T.CenterCrop(9)(x), x[:, :, 0:9])    # round(0.5) = 0


def test_ten_crop_corners_centre_and_mirrors():
    x = image(c=2, h=7, w=9)
    out = T.TenCrop((3, 4))(x)
    m = x[..., ::-1]
    expected = [x[:, :3, :4], x[:, :3, 5:], x[:, 4:, :4], x[:, 4:, 5:], x[:, 2:5, 2:6],
                m[:, :3, :4], m[:, :3, 5:], m[:, 4:, :4], m[:, 4:, 5:], m[:, 2:5, 2:6]]
    assert out.shape == (10, 2, 3, 4)
    np.testing.assert_array_equal(out, np.stack(expected))


# ----------------------------------------------------------------------------
# resizing
# ----------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(H=st.integers(2, 12), W=st.integers(2, 12), h=st.integers(12, 30),
       w=st.integers(12, 30))
def test_resize_up_matches_pil_bilinear(H, W, h, w):
    from PIL import Image
    x = image(c=1, h=H, w=W)
    expected = np.asarray(Image.fromarray(x[0], mode="F").resize((w, h), Image.BILINEAR))
    np.testing.assert_allclose(T.Resize((h, w))(x)[0], expected, atol=1e-5)


def test_resize_int_sets_the_shorter_side():
    assert T.Resize(10)(image(h=20, w=45)).shape == (3, 10, 22)
    assert T.Resize(10)(image(h=45, w=20)).shape == (3, 22, 10)
    x = image(h=6, w=5)
    np.testing.assert_allclose(T.Resize((6, 5))(x), x)


@settings(max_examples=30, deadline=None)
@given(H=st.integers(1, 40), W=st.integers(1, 40), seed=st.integers(0, 1000))
def test_random_resized_crop_window_is_inside_and_in_range(H, W, seed):
    t = T.RandomResizedCrop(8, scale=(0.2, 0.9), ratio=(0.5, 2.0))
    top, left, h, w = t.window(H, W, rng(seed))
    assert 0 <= top and top + h <= H and 0 <= left and left + w <= W and h > 0 and w > 0
    assert t(image(h=H, w=W), rng(seed)).shape == (3, 8, 8)


def test_random_resized_crop_of_the_whole_image_is_the_identity():
    x = image(h=6, w=9)
    t = T.RandomResizedCrop((6, 9), scale=(1, 1), ratio=(1.5, 1.5))
    np.testing.assert_allclose(t(x, rng()), x, atol=1e-6)


# ----------------------------------------------------------------------------
# rotation, shearing, local warping
# ----------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 12), c=st.sampled_from([1, 3]))
def test_rotation_by_90_is_rot90(n, c):
    x = image(c=c, h=n, w=n)
    np.testing.assert_allclose(T.RandomRotation((90, 90))(x), np.rot90(x, 1, axes=(1, 2)),
                               atol=1e-5)
    np.testing.assert_allclose(T.RandomRotation((-90, -90))(x), np.rot90(x, -1, axes=(1, 2)),
                               atol=1e-5)
    np.testing.assert_allclose(T.RandomRotation((180, 180))(x), x[:, ::-1, ::-1], atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(c=st.integers(1, 3), h=st.integers(1, 13), w=st.integers(1, 13),
       matrix=st.lists(st.floats(-3, 3), min_size=4, max_size=4),
       offset=st.lists(st.floats(-8, 8), min_size=2, max_size=2),
       fill=st.floats(-2, 2), dtype=st.sampled_from([np.float32, np.float64]))
def test_warp_bilinear_is_scipys_affine_transform(c, h, w, matrix, offset, fill, dtype):
    """The Numba warp behind rotation and shear against an independent
    implementation: scipy.ndimage's order-1 affine_transform, mode
    "grid-constant", channel by channel, on any matrix (not only rotations)
    and offset, points inside, across and beyond the edges."""
    from scipy import ndimage
    x = image(c=c, h=h, w=w, dtype=dtype)
    m, off = np.array(matrix).reshape(2, 2), np.array(offset)
    out = np.empty_like(x)
    T.warp_bilinear(x, m, off, fill, out)
    expected = np.stack([ndimage.affine_transform(ch, m, offset=off, order=1,
                                                  mode="grid-constant", cval=fill) for ch in x])
    assert out.dtype == x.dtype
    np.testing.assert_allclose(out, expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


def test_rotation_keeps_the_inside_of_a_constant_image():
    out = T.RandomRotation(30)(np.full((1, 21, 21), 0.5, np.float32), rng())
    np.testing.assert_allclose(out[0, 7:14, 7:14], 0.5, atol=1e-6)   # centre
    assert out[0, 0, 0] == 0 or out[0, 0, -1] == 0                       # a filled corner


def test_shear_by_45_degrees_shifts_row_y_by_y_minus_centre():
    x = image(c=2, h=7, w=9)
    expected = np.zeros_like(x)
    for y in range(7):
        shift = y - 3
        for col in range(9):
            if 0 <= col - shift < 9:
                expected[:, y, col] = x[:, y, col - shift]
    np.testing.assert_allclose(T.RandomShear((45, 45))(x), expected, atol=1e-5)
    np.testing.assert_allclose(T.RandomShear(0)(x), x)


def ramps(n):
    """Channels: column index, row index, column index again."""
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return np.stack([cols, rows, cols]).astype(np.float64)


def test_elastic_alpha_zero_is_identity():
    x = image(h=11, w=13)
    np.testing.assert_array_equal(T.ElasticDistortion(0, 3)(x, rng()), x)


def test_elastic_displacement_is_bounded_linear_in_alpha_and_shared_by_channels():
    n, inner = 40, slice(4, 36)          # |dx|, |dy| <= alpha = 3: no border effects
    x = ramps(n)
    out1 = T.ElasticDistortion(alpha=1.5, sigma=4)(x, rng(5))
    out2 = T.ElasticDistortion(alpha=3.0, sigma=4)(x, rng(5))
    field1, field2 = (out1 - x)[:, inner, inner], (out2 - x)[:, inner, inner]
    np.testing.assert_allclose(field2, 2 * field1, atol=1e-9)       # dx = alpha * smooth
    np.testing.assert_allclose(field1[0], field1[2], atol=1e-12)    # same warp per channel
    assert np.abs(field2).max() <= 3.0 and np.abs(field2).max() > 0.05
    # smooth: neighbours move together (white noise smoothed by a Gaussian of
    # std sigma has neighbour correlation exp(-1 / (4 sigma^2)) = 0.98; unsmoothed 0)
    dx = field2[0]
    assert np.corrcoef(dx[:, :-1].ravel(), dx[:, 1:].ravel())[0, 1] > 0.9


# ----------------------------------------------------------------------------
# colour
# ----------------------------------------------------------------------------
def test_color_shift_adds_one_bounded_constant_per_channel():
    x = image(h=5, w=6)
    out = T.ColorShift(0.2)(x, rng(3))
    offsets = (out - x).reshape(3, -1)
    np.testing.assert_allclose(offsets, offsets[:, :1] * np.ones((1, 30)), atol=1e-6)
    assert np.all(np.abs(offsets) <= 0.2) and len(set(offsets[:, 0].round(6))) == 3


def test_fit_pca_color_gives_eigenpairs_of_the_pixel_covariance():
    r = rng(4)
    mix = np.array([[1.0, 0.2, 0.0], [0.3, 0.5, 0.1], [0.0, 0.4, 0.2]])
    images = np.einsum("ij,njhw->nihw", mix, r.normal(size=(5, 3, 6, 7)))   # (5, 3, 6, 7)
    eigvals, eigvecs = T.fit_pca_color(images)
    pixels = images.transpose(1, 0, 2, 3).reshape(3, -1)
    centred = pixels - pixels.mean(axis=1, keepdims=True)
    cov = sum(np.outer(p, p) for p in centred.T) / (centred.shape[1] - 1)
    np.testing.assert_allclose(cov @ eigvecs, eigvecs * eigvals, atol=1e-10)
    np.testing.assert_allclose(eigvecs.T @ eigvecs, np.eye(3), atol=1e-12)
    assert eigvals[0] >= eigvals[1] >= eigvals[2] > 0
    same = T.fit_pca_color(im for im in images)         # one image at a time
    np.testing.assert_allclose(same[0], eigvals)


def test_pca_color_adds_alpha_lambda_along_the_eigenvectors():
    q, _ = np.linalg.qr(rng(6).normal(size=(3, 3)))                 # orthonormal columns
    eigvals = np.array([0.2, 0.05, 0.0])
    t = T.PCAColorAugmentation(eigvals, q, std=0.1)
    x = image(h=4, w=5, dtype=np.float64)
    r = rng(7)
    alphas = []
    for _ in range(2000):
        offset = t(x, r) - x                                        # (3, 4, 5)
        np.testing.assert_allclose(offset, offset[:, :1, :1] * np.ones((1, 4, 5)), atol=1e-12)
        coef = q.T @ offset[:, 0, 0]                                 # = alpha_i lambda_i
        assert abs(coef[2]) < 1e-12                                  # lambda_3 = 0: no shift
        alphas.append(coef[:2] / eigvals[:2])
    assert np.std(alphas, axis=0) == pytest.approx([0.1, 0.1], rel=0.1)
    assert np.mean(alphas, axis=0) == pytest.approx([0, 0], abs=0.01)


def test_normalize_closed_form():
    x = image(h=4, w=4)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    out = T.Normalize(mean, std)(x)
    for c in range(3):
        np.testing.assert_allclose(out[c], (x[c].astype(np.float64) - mean[c]) / std[c],
                                   rtol=1e-6, atol=1e-7)
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match="3 means for an image of 1 channels"):
        T.Normalize(mean, std)(image(c=1))
    with pytest.raises(ValueError, match="std > 0"):
        T.Normalize([0.0], [0.0])


# ----------------------------------------------------------------------------
# every transform: reproducible, input untouched, dtype kept
# ----------------------------------------------------------------------------
EIG = (np.array([0.2, 0.02, 0.005]), np.eye(3))
RANDOM = [T.RandomHorizontalFlip(), T.RandomCrop(5, padding=2), T.RandomResizedCrop(6),
          T.RandomRotation(20), T.RandomShear(20), T.ElasticDistortion(2, 2),
          T.ColorShift(0.1), T.PCAColorAugmentation(*EIG),
          T.Compose([T.RandomCrop(6), T.RandomRotation(10), T.ColorShift(0.1)])]
ALL = RANDOM + [T.CenterCrop(4), T.Resize(5), T.Normalize([0.5] * 3, [0.2] * 3),
                T.TenCrop(4)]


@pytest.mark.parametrize("t", RANDOM, ids=repr)
def test_same_seed_same_output_different_seed_different_output(t):
    x = image(h=9, w=9)
    np.testing.assert_array_equal(t(x, rng(11)), t(x, rng(11)))
    outs = [t(x, rng(s)) for s in range(6)]
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])
    minidl.manual_seed(3)
    a = t(x)
    minidl.manual_seed(3)
    np.testing.assert_array_equal(a, t(x))             # no rng: minidl's generator


@pytest.mark.parametrize("t", ALL, ids=repr)
def test_input_untouched_and_dtype_kept(t):
    for dtype in (np.float32, np.float64):
        x = image(h=9, w=9, dtype=dtype)
        copy = x.copy()
        out = t(x, rng())
        np.testing.assert_array_equal(x, copy)
        assert out.dtype == dtype and not np.shares_memory(out, x)


def test_compose_applies_in_order_with_one_rng():
    x = image(h=9, w=9)
    ts = [T.RandomCrop(6), T.RandomRotation(10)]
    r1, r2 = rng(5), rng(5)
    np.testing.assert_array_equal(T.Compose(ts)(x, r1), ts[1](ts[0](x, r2), r2))


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("img,error,match", [
    (np.zeros((4, 4), np.float32), ValueError, r"3 dimensions \(C, H, W\), got shape \(4, 4\)"),
    (np.zeros((10, 12, 3), np.float32), ValueError, "looks like HWC"),
    (np.zeros((3, 4, 4), np.uint8), TypeError, "floating-point"),
    ([[[0.0]]], TypeError, "NumPy array"),
])
def test_bad_images(img, error, match):
    with pytest.raises(error, match=match):
        T.RandomRotation(10)(img, rng())


@pytest.mark.parametrize("t", [T.CenterCrop(5), T.TenCrop(5), T.RandomCrop(5)], ids=repr)
def test_crop_larger_than_image(t):
    with pytest.raises(ValueError, match=r"\(4x4.*smaller than the crop \(5x5\)"):
        t(image(h=4, w=4), rng())


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        T.RandomCrop(0)
    with pytest.raises(ValueError, match="p must be"):
        T.RandomHorizontalFlip(1.5)
    with pytest.raises(ValueError, match="RGB"):
        T.PCAColorAugmentation(*EIG)(image(c=1), rng())
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        T.fit_pca_color(image(c=1))
    with pytest.raises(TypeError, match="callable"):
        T.Compose([3])


def test_get_by_name():
    t = T.get("RandomCrop", size=3, padding=1)
    assert isinstance(t, T.RandomCrop) and t.size == (3, 3)
    with pytest.raises(ValueError, match="unknown transform 'Flip'; known: .*RandomHorizontalFlip"):
        T.get("Flip")


# ----------------------------------------------------------------------------
# the augmentation picture
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("c", [1, 3])
def test_augmentation_grid_writes_a_png(tmp_path, c):
    from PIL import Image
    path = tmp_path / "grid.png"
    assert make_augmentation_grid(image(c=c, h=24, w=32), path, seed=1) == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
