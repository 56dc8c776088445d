"""Data augmentation: the distortions of the lectures, one small class each.

Convention (all transforms): an image is a NumPy float array of shape
(C, H, W) — channels first, like a minidl/PyTorch tensor — usually float32
in [0, 1] (``datasets.to_chw_float`` converts an HWC uint8 picture). Rows
go down, columns right. A transform is called as ``t(img, rng)`` with a
NumPy Generator ``rng`` (the DataLoader passes one per sample, made from
the seed, the epoch and the sample index, so results are reproducible);
``t(img)`` uses minidl's global generator (``minidl.manual_seed``). A
transform never changes its input; the output has the input's dtype.

Geometry is resampled bilinearly (scipy.ndimage's ``order=1``): rotation
and shear by a Numba loop, ``warp_bilinear``, checked against scipy's
affine_transform; resizing and elastic distortion by scipy.ndimage itself.
Points that fall outside the image get ``fill`` (0 by default). The lectures' list:
mirroring (RandomHorizontalFlip), random cropping (RandomCrop,
RandomResizedCrop), rotation (RandomRotation), shearing (RandomShear),
local warping (ElasticDistortion), colour shifting (ColorShift,
PCAColorAugmentation), and multi-crop at test time (TenCrop).
``make_augmentation_grid`` draws one of each into a PNG.
"""
import numpy as np

from ..jit import njit
from ..tensor import default_rng


def _ndimage():
    """scipy.ndimage, imported on first use (SciPy is in the "train" extra)."""
    from scipy import ndimage
    return ndimage


def _check_image(img, who):
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{who}: img must be a NumPy array of shape (C, H, W), got "
                        f"{type(img).__name__}")
    if img.ndim != 3:
        raise ValueError(f"{who}: img must have 3 dimensions (C, H, W), got shape {img.shape}")
    if img.dtype.kind != "f":
        raise TypeError(f"{who}: img must be a floating-point array (e.g. float32 in "
                        f"[0, 1]), got dtype {img.dtype}; convert pictures with "
                        f"minidl.data.to_chw_float")
    if img.shape[0] > 4 and img.shape[2] <= 4:
        raise ValueError(f"{who}: img of shape {img.shape} looks like HWC; transforms "
                         f"take CHW: use img.transpose(2, 0, 1)")


def _size2(size, who, name="size"):
    """An int or (h, w) pair -> (h, w) of positive ints."""
    pair = (size, size) if np.isscalar(size) else tuple(size)
    if len(pair) != 2 or any(int(s) != s or s < 1 for s in pair):
        raise ValueError(f"{who}: {name} must be a positive int or a pair (h, w), got {size!r}")
    return int(pair[0]), int(pair[1])


def _range(value, who, name):
    """A number d -> (-d, d); a pair (lo, hi) stays."""
    if np.isscalar(value):
        if value < 0:
            raise ValueError(f"{who}: {name} must be >= 0 when a single number, got {value}")
        return -float(value), float(value)
    lo, hi = (float(v) for v in value)
    if lo > hi:
        raise ValueError(f"{who}: {name} = ({lo}, {hi}) needs lo <= hi")
    return lo, hi


def _crop(img, top, left, h, w, who):
    H, W = img.shape[1:]
    if h > H or w > W:
        raise ValueError(f"{who}: the image ({H}x{W}) is smaller than the crop ({h}x{w})")
    return img[:, top:top + h, left:left + w]


def _resize(img, h, w):
    """Bilinear resize of every channel to (h, w), pixels as squares (like PIL)."""
    H, W = img.shape[1:]
    return _ndimage().zoom(img, (1, h / H, w / W), order=1, grid_mode=True, mode="nearest")


def _warp(img, matrix, fill):
    """out[:, p] = img[:, c + matrix @ (p - c)], p = (row, col), c = the centre."""
    centre = (np.array(img.shape[1:]) - 1) / 2
    offset = centre - matrix @ centre
    out = np.empty_like(img)
    warp_bilinear(img, np.asarray(matrix, np.float64), offset, float(fill), out)
    return out


@njit
def _pixel(plane, r, s, fill):
    """plane[r, s], or ``fill`` outside the plane."""
    H, W = plane.shape
    return plane[r, s] if 0 <= r < H and 0 <= s < W else fill


@njit
def warp_bilinear(img, matrix, offset, fill, out):
    """out[c, i, j] = img[c] at the point (r, s) = matrix @ (i, j) + offset,
    interpolated bilinearly between its 4 neighbouring pixels; the image
    continues as ``fill`` beyond its edges, so a point a hair outside
    (sin(pi) = 1e-16) still interpolates its neighbours. That is
    scipy.ndimage.affine_transform with order=1 and mode="grid-constant",
    which the tests hold it against; in float64, then cast to out's dtype.
    img, out (C, H, W); matrix (2, 2), offset (2,) float64. A Numba loop:
    19 us on a 32x32 digit, against 64 us for scipy's general one (the main
    job's augmentation)."""
    C, H, W = img.shape
    for i in range(H):
        for j in range(W):
            r = matrix[0, 0] * i + matrix[0, 1] * j + offset[0]
            s = matrix[1, 0] * i + matrix[1, 1] * j + offset[1]
            r0, s0 = np.floor(r), np.floor(s)
            fr, fs = r - r0, s - s0                       # weights of the far neighbours
            r0, s0 = int(r0), int(s0)
            for c in range(C):
                plane = img[c]
                top = (1 - fs) * _pixel(plane, r0, s0, fill) + fs * _pixel(plane, r0, s0 + 1, fill)
                bottom = (1 - fs) * _pixel(plane, r0 + 1, s0, fill) + \
                    fs * _pixel(plane, r0 + 1, s0 + 1, fill)
                out[c, i, j] = (1 - fr) * top + fr * bottom


class Transform:
    """Base class: ``t(img, rng=None)`` checks ``img`` and calls ``apply``."""

    def __call__(self, img, rng=None):
        _check_image(img, type(self).__name__)
        return self.apply(img, rng if rng is not None else default_rng())

    def apply(self, img, rng):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply ``transforms`` in order, all drawing from the same ``rng``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: every transform must be callable, got "
                                f"{type(t).__name__}")

    def apply(self, img, rng):
        for t in self.transforms:
            img = t(img, rng)
        return img


# ----------------------------------------------------------------------------
# mirroring and cropping
# ----------------------------------------------------------------------------
class RandomHorizontalFlip(Transform):
    """With probability p, mirror left-right: ``img[:, :, ::-1]``."""

    def __init__(self, p=0.5):
        if not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = p

    def apply(self, img, rng):
        return img[:, :, ::-1].copy() if rng.random() < self.p else img.copy()


class RandomCrop(Transform):
    """Pad each side by ``padding`` (with ``fill``), then cut a random (h, w) window.

    The top-left corner is uniform over every position that fits:
    top in [0, H + 2 padding - h], left in [0, W + 2 padding - w].
    """

    def __init__(self, size, padding=0, fill=0.0):
        self.size = _size2(size, "RandomCrop")
        if int(padding) != padding or padding < 0:
            raise ValueError(f"RandomCrop: padding must be an int >= 0, got {padding!r}")
        self.padding, self.fill = int(padding), fill

    def apply(self, img, rng):
        p, (h, w), (C, H, W) = self.padding, self.size, img.shape
        if h > H + 2 * p or w > W + 2 * p:
            raise ValueError(f"RandomCrop: the image ({H}x{W}, padded by {p}) is smaller "
                             f"than the crop ({h}x{w})")
        top, left = rng.integers(0, H + 2 * p - h + 1), rng.integers(0, W + 2 * p - w + 1)
        # the window is rows [y0, y0 + h) and columns [x0, x0 + w) of img, which
        # may reach into the padding: copy the part inside img into a filled
        # window (9 us on a 32x32 digit; np.pad-ing the whole image took 46)
        y0, x0 = top - p, left - p
        out = np.full((C, h, w), self.fill, dtype=img.dtype)
        r0, c0 = max(y0, 0), max(x0, 0)                  # empty when the window is
        r1, c1 = max(r0, min(y0 + h, H)), max(c0, min(x0 + w, W))   # all padding
        out[:, r0 - y0:r1 - y0, c0 - x0:c1 - x0] = img[:, r0:r1, c0:c1]
        return out


class CenterCrop(Transform):
    """Cut the central (h, w) window (top = round((H - h) / 2), as torchvision)."""

    def __init__(self, size):
        self.size = _size2(size, "CenterCrop")

    def apply(self, img, rng):
        (h, w), (H, W) = self.size, img.shape[1:]
        top, left = int(round((H - h) / 2)), int(round((W - w) / 2))
        return _crop(img, top, left, h, w, "CenterCrop").copy()


class TenCrop(Transform):
    """Multi-crop at test time: the 4 corner and the centre (h, w) windows of
    the image and of its mirror image, stacked: (10, C, h, w). Average the
    classifier's outputs over the 10 crops."""

    def __init__(self, size):
        self.size = _size2(size, "TenCrop")

    def apply(self, img, rng):
        (h, w), (H, W) = self.size, img.shape[1:]
        corners = [(0, 0), (0, W - w), (H - h, 0), (H - h, W - w),
                   (int(round((H - h) / 2)), int(round((W - w) / 2)))]
        crops = [_crop(im, t, left, h, w, "TenCrop")
                 for im in (img, img[:, :, ::-1]) for t, left in corners]
        return np.stack(crops)


class Resize(Transform):
    """Bilinear resize to ``size``: a pair (h, w), or an int for the shorter
    side (the aspect ratio kept, the longer side truncated, as torchvision).
    No antialiasing: for strong shrinking blur first."""

    def __init__(self, size):
        h, w = _size2(size, "Resize")
        self.size = h if np.isscalar(size) else (h, w)

    def apply(self, img, rng):
        H, W = img.shape[1:]
        if isinstance(self.size, tuple):
            return _resize(img, *self.size)
        s = self.size
        return _resize(img, s, int(s * W / H)) if H <= W else _resize(img, int(s * H / W), s)


class RandomResizedCrop(Transform):
    """Crop a random area fraction ``scale`` and aspect ratio ``ratio`` (w/h,
    log-uniform), resize it to ``size``: Inception's crop, as torchvision
    (10 tries, then a central crop with the ratio clamped)."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size = _size2(size, "RandomResizedCrop")
        self.scale = _range(scale, "RandomResizedCrop", "scale")
        self.ratio = _range(ratio, "RandomResizedCrop", "ratio")
        if self.scale[0] <= 0 or self.ratio[0] <= 0:
            raise ValueError(f"RandomResizedCrop: scale and ratio must be positive, got "
                             f"scale={scale}, ratio={ratio}")

    def window(self, H, W, rng):
        """(top, left, h, w) of the crop in an H x W image."""
        log_ratio = np.log(self.ratio)
        for _ in range(10):
            area = H * W * rng.uniform(*self.scale)
            r = np.exp(rng.uniform(*log_ratio))
            w, h = int(round(np.sqrt(area * r))), int(round(np.sqrt(area / r)))
            if 0 < w <= W and 0 < h <= H:
                return rng.integers(0, H - h + 1), rng.integers(0, W - w + 1), h, w
        r = np.clip(W / H, *self.ratio)
        h, w = (H, int(round(H * r))) if W / H > r else (int(round(W / r)), W)
        return (H - h) // 2, (W - w) // 2, h, w

    def apply(self, img, rng):
        top, left, h, w = self.window(*img.shape[1:], rng)
        return _resize(img[:, top:top + h, left:left + w], *self.size)


# ----------------------------------------------------------------------------
# rotation, shearing, local warping
# ----------------------------------------------------------------------------
class RandomRotation(Transform):
    """Rotate by theta ~ U(-degrees, degrees) (or U(lo, hi)) counter-clockwise
    about the centre; the corners get ``fill``. Output pixel at offset
    (dy, dx) from the centre samples the input at
    (cos t dy + sin t dx, -sin t dy + cos t dx)."""

    def __init__(self, degrees, fill=0.0):
        self.degrees, self.fill = _range(degrees, "RandomRotation", "degrees"), fill

    def apply(self, img, rng):
        t = np.deg2rad(rng.uniform(*self.degrees))
        matrix = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
        return _warp(img, matrix, self.fill)


class RandomShear(Transform):
    """Horizontal shear by s ~ U(-degrees, degrees): row y slides right by
    tan(s) * (y - centre row), so verticals lean by s. Output (y, x) samples
    the input at (y, x - tan(s) (y - cy))."""

    def __init__(self, degrees, fill=0.0):
        self.degrees, self.fill = _range(degrees, "RandomShear", "degrees"), fill
        if max(abs(d) for d in self.degrees) >= 90:
            raise ValueError(f"RandomShear: degrees must lie in (-90, 90), got {degrees}")

    def apply(self, img, rng):
        k = np.tan(np.deg2rad(rng.uniform(*self.degrees)))
        return _warp(img, np.array([[1.0, 0.0], [-k, 1.0]]), self.fill)


class ElasticDistortion(Transform):
    """Local warping (Simard et al. 2003): out(y, x) = img(y + dy, x + dx),
    where dy, dx are fields of U(-1, 1) noise smoothed by a Gaussian of
    std ``sigma`` pixels and scaled by ``alpha`` (so |dy|, |dx| <= alpha).
    Same field for every channel; borders reflect. alpha=0 is the identity.
    Simard used sigma=4, alpha=34 on 28x28 digits."""

    def __init__(self, alpha, sigma):
        if alpha < 0 or sigma <= 0:
            raise ValueError(f"ElasticDistortion: needs alpha >= 0 and sigma > 0, got "
                             f"alpha={alpha}, sigma={sigma}")
        self.alpha, self.sigma = alpha, sigma

    def apply(self, img, rng):
        ndimage, (H, W) = _ndimage(), img.shape[1:]
        dy, dx = (self.alpha * ndimage.gaussian_filter(rng.uniform(-1, 1, (H, W)),
                                                       self.sigma) for _ in range(2))
        rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
        coords = [rows + dy, cols + dx]                                  # 2 x (H, W)
        return np.stack([ndimage.map_coordinates(ch, coords, order=1, mode="reflect")
                         for ch in img])


# ----------------------------------------------------------------------------
# colour
# ----------------------------------------------------------------------------
class ColorShift(Transform):
    """Add a random offset u_c ~ U(-max_offset, max_offset) to each channel c
    (R, G, B shifted independently). No clipping."""

    def __init__(self, max_offset):
        if max_offset < 0:
            raise ValueError(f"ColorShift: max_offset must be >= 0, got {max_offset}")
        self.max_offset = max_offset

    def apply(self, img, rng):
        u = rng.uniform(-self.max_offset, self.max_offset, img.shape[0])     # (C,)
        return img + u.astype(img.dtype)[:, None, None]


def fit_pca_color(images):
    """Eigenvalues and eigenvectors of the RGB covariance of the TRAINING set.

    images: (N, 3, H, W), (3, H, W), or an iterable of (3, H, W) arrays
    (sizes may differ). Every pixel is one sample x in R^3, and
    Sigma = (sum x x^T - n m m^T) / (n - 1), m the mean pixel, accumulated
    image by image so the training set need not fit in memory at once.
    Returns (eigvals (3,), eigvecs (3, 3)): Sigma p_i = lambda_i p_i with
    the eigenvector p_i in COLUMN i, largest eigenvalue first.
    """
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    n, total, outer = 0, np.zeros(3), np.zeros((3, 3))
    for a in images:
        if np.ndim(a) != 3 or np.shape(a)[0] != 3:
            raise ValueError(f"fit_pca_color: images must be RGB CHW arrays (3, H, W), "
                             f"got one of shape {np.shape(a)}")
        pixels = np.reshape(a, (3, -1)).astype(np.float64)                # (3, H*W)
        n += pixels.shape[1]
        total += pixels.sum(axis=1)
        outer += pixels @ pixels.T
    if n < 2:
        raise ValueError(f"fit_pca_color: needs at least 2 pixels, got {n}")
    mean = total / n                                                      # (3,)
    cov = (outer - n * np.outer(mean, mean)) / (n - 1)                    # (3, 3)
    eigvals, eigvecs = np.linalg.eigh(cov)                                # ascending
    return eigvals[::-1].copy(), eigvecs[:, ::-1].copy()


class PCAColorAugmentation(Transform):
    """AlexNet's colour augmentation: add sum_i alpha_i lambda_i p_i to every
    pixel, alpha_i ~ N(0, std), with (lambda_i, p_i) from ``fit_pca_color``.
    Shifts colours along the directions they vary most in the training set
    (a change of lighting), keeping the overall colour. The offset depends
    on the pixel scale: fit and apply on [0, 1] images (ImageNet's
    eigenvalues are then about 0.22, 0.019, 0.0045, as in fb.resnet.torch)."""

    def __init__(self, eigvals, eigvecs, std=0.1):
        self.eigvals = np.asarray(eigvals, dtype=np.float64)
        self.eigvecs = np.asarray(eigvecs, dtype=np.float64)
        if self.eigvals.shape != (3,) or self.eigvecs.shape != (3, 3):
            raise ValueError(f"PCAColorAugmentation: eigvals must be (3,) and eigvecs "
                             f"(3, 3), got {self.eigvals.shape} and {self.eigvecs.shape}")
        self.std = std

    def apply(self, img, rng):
        if img.shape[0] != 3:
            raise ValueError(f"PCAColorAugmentation: img must have 3 (RGB) channels, got "
                             f"shape {img.shape}")
        alpha = rng.normal(0.0, self.std, 3)                                  # (3,)
        offset = self.eigvecs @ (alpha * self.eigvals)                        # (3,)
        return img + offset.astype(img.dtype)[:, None, None]


class Normalize(Transform):
    """out_c = (img_c - mean_c) / std_c for each channel c."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(std, dtype=np.float64).reshape(-1)
        if len(self.mean) != len(self.std) or np.any(self.std <= 0):
            raise ValueError(f"Normalize: mean and std need the same length and std > 0, "
                             f"got mean={mean}, std={std}")

    def apply(self, img, rng):
        if len(self.mean) not in (1, img.shape[0]):
            raise ValueError(f"Normalize: {len(self.mean)} means for an image of "
                             f"{img.shape[0]} channels (shape {img.shape})")
        mean, std = self.mean[:, None, None], self.std[:, None, None]
        return ((img - mean) / std).astype(img.dtype)


# ----------------------------------------------------------------------------
# lookup by name
# ----------------------------------------------------------------------------
TRANSFORMS = {cls.__name__: cls for cls in (
    Compose, RandomHorizontalFlip, RandomCrop, CenterCrop, TenCrop, Resize,
    RandomResizedCrop, RandomRotation, RandomShear, ElasticDistortion, ColorShift,
    PCAColorAugmentation, Normalize)}


def get(name, **kwargs):
    """Make a transform from its class name: ``get("RandomCrop", size=28)``."""
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; known: {', '.join(TRANSFORMS)}")
    return TRANSFORMS[name](**kwargs)


# ----------------------------------------------------------------------------
# a picture of every augmentation (the CLI: minidl augment IMAGE)
# ----------------------------------------------------------------------------
def augmentations(image):
    """(title, transform) pairs sized for ``image`` (C, H, W)."""
    C, H, W = image.shape
    s = min(H, W)
    # U(-1, 1) noise smoothed by a Gaussian of std sigma has std
    # sqrt(1/3) / (2 sqrt(pi) sigma); pick alpha for displacements of ~1.5% of s
    sigma = 0.08 * s
    alpha = 0.015 * s * 2 * np.sqrt(np.pi) * sigma / np.sqrt(1 / 3)
    items = [
        ("mirroring", RandomHorizontalFlip(p=1.0)),
        ("random crop 75%", RandomCrop(int(0.75 * s))),
        ("random resized crop", RandomResizedCrop((H, W), scale=(0.2, 1.0))),
        ("rotation +-30 deg", RandomRotation(30)),
        ("shearing +-30 deg", RandomShear(30)),
        (f"local warping a={alpha:.0f} s={sigma:.1f}", ElasticDistortion(alpha, sigma)),
        ("colour shift +-0.2", ColorShift(0.2)),
    ]
    if C == 3:
        eigvals, eigvecs = fit_pca_color(image)
        items.append(("PCA colour, std 1 (x10)", PCAColorAugmentation(eigvals, eigvecs, 1.0)))
    return items


def make_augmentation_grid(image, path, seed=0):
    """Write a PNG grid: the original ``image`` and one draw of each augmentation.

    image: (C, H, W) float array in [0, 1] (C = 1 or 3); path: the .png to
    write; seed: the draws are reproducible. PCA colour augmentation is fitted
    on the image's own pixels and drawn with std 1 (ten times AlexNet's 0.1)
    so that its effect is visible. Returns ``path``.
    """
    _check_image(image, "make_augmentation_grid")
    from matplotlib.figure import Figure   # no pyplot: no global state, no GUI

    panels = [("original", image)]
    for k, (title, t) in enumerate(augmentations(image)):
        panels.append((title, t(image, np.random.default_rng([seed, k]))))
    cols = 3
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(4 * cols, 3.2 * rows))
    for k, (title, img) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        shown = np.clip(img.transpose(1, 2, 0), 0, 1)           # (H, W, C)
        if shown.shape[2] == 1:
            ax.imshow(shown[:, :, 0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(shown)
        ax.set_title(f"{title}\n{img.shape[1]}x{img.shape[2]}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=80)
    return path
