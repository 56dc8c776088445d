"""The benchmark cases: kernel shapes, networks, and the targets.

Kernel cases are the layers of the case-study networks (float32, NCHW).
A conv case (N, C, H, W) -> O with a k x k kernel, stride s, padding p has

    OH = (H + 2p - k) // s + 1          (OW alike)
    MACs = N * O * OH * OW * C * k * k  (one multiply-add per weight per output)
    FLOPs(forward) = 2 * MACs,  FLOPs(forward + backward) = 3 * 2 * MACs

(backward is two more GEMMs of the forward's size: gw = gy col^T and
gcol = w^T gy). Pooling and LRN are memory-bound: they get times, no FLOPs.
"""
import dataclasses
import fnmatch


@dataclasses.dataclass(frozen=True)
class KernelCase:
    name: str          # "conv/vgg_conv3_1": the --only pattern that selects it
    op: str            # "conv", "maxpool", "avgpool" or "lrn"
    x_shape: tuple     # (N, C, H, W)
    out: int = 0       # conv: output channels
    k: int = 1         # kernel size (conv, pool) or LRN size
    s: int = 1         # stride
    p: int = 0         # padding
    title: str = ""

    @property
    def out_hw(self):
        """(OH, OW) of conv and pooling; (H, W) for LRN."""
        H, W = self.x_shape[2:]
        if self.op == "lrn":
            return H, W
        return (H + 2 * self.p - self.k) // self.s + 1, (W + 2 * self.p - self.k) // self.s + 1

    @property
    def out_shape(self):
        N, C = self.x_shape[:2]
        return (N, self.out if self.op == "conv" else C) + self.out_hw

    @property
    def macs(self):
        """Multiply-adds of the forward pass (conv only; 0 otherwise)."""
        if self.op != "conv":
            return 0
        N, C = self.x_shape[:2]
        OH, OW = self.out_hw
        return N * self.out * OH * OW * C * self.k * self.k

    def flops(self, passes):
        """FLOPs of "fwd" (2 MACs) or "fwd+bwd" (3 x fwd)."""
        return 2 * self.macs * (3 if passes == "fwd+bwd" else 1)

    @property
    def shape_text(self):
        N, C, H, W = self.x_shape
        text = f"{N}x{C}x{H}x{W}"
        if self.op == "conv":
            return f"{text} -> {self.out}, k{self.k} s{self.s} p{self.p}"
        if self.op == "lrn":
            return f"{text}, size {self.k}"
        return f"{text}, {self.k}x{self.k}/{self.s}"


KERNEL_CASES = [
    KernelCase("conv/lenet_conv2", "conv", (64, 6, 14, 14), 16, 5, title="LeNet-5 conv2"),
    KernelCase("conv/alexnet_conv1", "conv", (8, 3, 227, 227), 96, 11, 4, title="AlexNet conv1"),
    KernelCase("conv/vgg_conv3_1", "conv", (8, 128, 56, 56), 256, 3, 1, 1, title="VGG-16 conv3_1"),
    KernelCase("conv/resnet_1x1", "conv", (8, 256, 56, 56), 64, 1, title="ResNet-50 1x1 reduce"),
    KernelCase("conv/resnet_3x3", "conv", (8, 64, 56, 56), 64, 3, 1, 1, title="ResNet-50 3x3"),
    KernelCase("conv/inception_5x5", "conv", (8, 16, 28, 28), 32, 5, 1, 2,
               title="Inception 5x5 branch"),
    KernelCase("maxpool/alexnet_3x3s2", "maxpool", (8, 96, 55, 55), k=3, s=2,
               title="AlexNet max-pool 3x3/2"),
    KernelCase("maxpool/vgg_2x2s2", "maxpool", (8, 64, 224, 224), k=2, s=2,
               title="VGG-16 max-pool 2x2/2"),
    KernelCase("avgpool/lenet_2x2s2", "avgpool", (64, 6, 28, 28), k=2, s=2,
               title="LeNet-5 avg-pool 2x2/2"),
    KernelCase("lrn/alexnet_size5", "lrn", (8, 96, 55, 55), k=5, title="AlexNet LRN size 5"),
]


@dataclasses.dataclass(frozen=True)
class NetworkCase:
    name: str          # "net/resnet50"
    model: str         # factory name in minidl.models
    batch: int
    size: int          # input height = width
    channels: int = 3
    num_classes: int = 1000
    quick_batch: int = 1

    @property
    def title(self):
        return f"{self.model} N={self.batch} {self.size}x{self.size}"


NETWORK_CASES = [
    NetworkCase("net/lenet5", "lenet5", 64, 32, channels=1, num_classes=10, quick_batch=64),
    NetworkCase("net/alexnet", "alexnet", 8, 227, quick_batch=2),
    NetworkCase("net/vgg16", "vgg16", 2, 224, quick_batch=1),
    NetworkCase("net/resnet50", "resnet50", 4, 224, quick_batch=1),
    NetworkCase("net/googlenet", "googlenet", 4, 224, quick_batch=1),
]

SGEMM_CASE = "sgemm"                 # always measured: the roofline
COLD_START_CASE = "coldstart/conv2d"

# the targets of the issue (CPU, float32, all threads, same run)
ROOFLINE_TARGETS = {"conv/vgg_conv3_1": 70.0, "conv/alexnet_conv1": 50.0,
                    "conv/resnet_1x1": 50.0, "conv/resnet_3x3": 50.0,
                    "conv/inception_5x5": 50.0}     # % of SGEMM peak, fwd+bwd
IM2COL_SHARE_MAX = 25.0         # % of conv fwd+bwd time in im2col + col2im
RESNET_GEMM_RATIO_MAX = 1.5     # ResNet-50 step / sum of its GEMM times
LENET_OVERHEAD_MAX = 30.0       # % of the LeNet-5 step outside kernels and optimizer


def kernel_case(name):
    for case in KERNEL_CASES:
        if case.name == name:
            return case
    raise ValueError(f"no kernel case {name!r}; cases: {[c.name for c in KERNEL_CASES]}")


def network_case(name):
    for case in NETWORK_CASES:
        if case.name == name:
            return case
    raise ValueError(f"no network case {name!r}; cases: {[c.name for c in NETWORK_CASES]}")


def all_case_names():
    return ([SGEMM_CASE] + [c.name for c in KERNEL_CASES] + [c.name for c in NETWORK_CASES]
            + [COLD_START_CASE])


def selected(name, patterns):
    """True if ``name`` matches one of the comma-separated ``patterns``: a glob
    ("conv/*") or, without wildcards, a substring ("vgg")."""
    if not patterns:
        return True
    for pattern in patterns.split(","):
        pattern = pattern.strip()
        if any(ch in pattern for ch in "*?["):
            if fnmatch.fnmatchcase(name, pattern):
                return True
        elif pattern and pattern in name:
            return True
    return False
