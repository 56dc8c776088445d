"""The case-study networks: parameter counts, torchvision names, shapes,
train/eval outputs, gradients (float64, reduced size, same code) and errors.

References are independent of the code: parameter counts from the papers /
torchvision, torchvision key names and shapes typed in by hand, shapes from
the case-study slides, losses recomputed with NumPy, gradients from central
differences (minidl.gradcheck, directional mode).
"""
import numpy as np
import pytest

import minidl
from minidl import Tensor, gradcheck, models, nn
from minidl.nn import functional_call
from minidl.models.alexnet import AlexNet
from minidl.models.googlenet import GoogLeNet
from minidl.models.resnet import BasicBlock, Bottleneck, ResNet
from minidl.models.vgg import VGG


def n_params(model):
    return sum(int(p.size) for p in model.parameters())


def randn(*shape, seed=0, dtype=np.float64):
    return Tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def check_keys(model, expected):
    """``expected``: {torchvision name: shape}, typed in from torchvision."""
    state = model.state_dict()
    for name, shape in expected.items():
        assert name in state, f"missing torchvision key {name}"
        assert state[name].shape == shape, f"{name}: {state[name].shape} != {shape}"


def check_gradients(model, x, seed=0):
    """Directional float64 checks of d out / d input, then of d out / d each
    kind of parameter (Conv2d.weight, Linear.bias, BatchNorm2d.weight...) on
    its own, so a small error in one kind is not drowned by the others.
    Dropout masks are re-drawn from the same seed on each evaluation."""
    model.double()
    kinds = [f"{type(m).__name__}.{name}" for m in model.modules()
             for name, p in m._parameters.items() if p is not None]
    params = [Tensor(p.data.copy()) for p in model.parameters()]
    x = Tensor(x.data.astype(np.float64))

    def fn(x, *ps):
        minidl.manual_seed(seed)
        return functional_call(model, ps, x)

    for p in params:
        p.requires_grad = True
    out = fn(x, *params)                   # the swap works: every parameter gets a gradient
    sum(o.sum() for o in (out if isinstance(out, tuple) else (out,))).backward()
    assert all(p.grad is not None for p in params)
    for kind in ["input"] + sorted(set(kinds)):
        x.requires_grad = kind == "input"
        for p, k in zip(params, kinds):
            p.requires_grad = k == kind
        assert gradcheck(fn, [x, *params], mode="directional", atol=1e-8, rtol=1e-4), kind


# ----------------------------------------------------------------------------
# LeNet-5
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("pool", ["avg", "max"])
def test_lenet5_params_and_shapes(activation, pool):
    model = models.lenet5(activation=activation, pool=pool)
    assert n_params(model) == 61_706
    x = randn(2, 1, 32, 32, dtype=np.float32)
    shapes = []
    for layer in model.features:
        x = layer(x)
        shapes.append(x.shape[2])
    assert [s for s, layer in zip(shapes, model.features)
            if not isinstance(layer, (nn.Tanh, nn.ReLU))] == [28, 14, 10, 5]
    assert model(randn(2, 1, 32, 32, dtype=np.float32)).shape == (2, 10)
    assert n_params(models.lenet5(num_classes=26)) == 61_706 + 16 * 84 + 16


def test_lenet5_bad_options():
    with pytest.raises(ValueError, match="activation"):
        models.lenet5(activation="sigmoid")
    with pytest.raises(ValueError, match="pool"):
        models.lenet5(pool="min")


@pytest.mark.parametrize("activation,pool", [("tanh", "avg"), ("relu", "max")])
def test_lenet5_gradients(activation, pool):
    model = models.lenet5(activation=activation, pool=pool)
    check_gradients(model, randn(2, 1, 32, 32))


def test_lenet5_wrong_input_size_names_layer():
    model = models.lenet5()
    with pytest.raises(ValueError) as e:
        model(randn(1, 1, 28, 28, dtype=np.float32))
    msg = str(e.value)                    # 28 -> 24 -> 12 -> 8 -> 4: 16*4*4 = 256 features
    assert "classifier.0" in msg and "Linear" in msg and "400" in msg and "(1, 256)" in msg


# ----------------------------------------------------------------------------
# AlexNet
# ----------------------------------------------------------------------------
SMALL_ALEX = dict(channels=(8, 8, 8, 8, 8), hidden=16)


@pytest.mark.parametrize("variant,groups,count", [
    ("original", 1, 62_378_344), ("original", 2, 60_965_224), ("torchvision", 1, 61_100_840)])
def test_alexnet_params_closed_form(variant, groups, count):
    """The count from the layer sizes of the paper / torchvision, without building it."""
    c = {"original": (96, 256, 384, 384, 256), "torchvision": (64, 192, 384, 256, 256)}[variant]
    kernels, grouped = (11, 5, 3, 3, 3), (False, True, False, True, True)
    total, c_in = 0, 3
    for c_out, k, g in zip(c, kernels, grouped):
        total += c_out * (c_in // (groups if g else 1)) * k * k + c_out
        c_in = c_out
    total += (9216 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert total == count
    # the same network built small by the same code has the matching formula
    model = AlexNet(num_classes=5, variant=variant, groups=groups, **SMALL_ALEX)
    small = sum(8 * (ci // (groups if g else 1)) * k * k + 8
                for ci, k, g in zip((3, 8, 8, 8, 8), kernels, grouped))
    assert n_params(model) == small + (288 * 16 + 16) + (16 * 16 + 16) + (16 * 5 + 5)


def test_alexnet_original_shapes_and_lrn_placement():
    model = AlexNet(num_classes=5, **SMALL_ALEX).eval()
    types = [type(m).__name__ for m in model.features]
    assert types[:4] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"]
    assert types[4:8] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"]
    lrn = model.features[2]
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)
    x = randn(1, 3, 227, 227, dtype=np.float32)
    sides = []
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            sides.append(x.shape[2])
    assert sides == [55, 27, 27, 13, 13, 13, 13, 6]


def test_alexnet_bad_options():
    with pytest.raises(ValueError, match="variant"):
        models.alexnet(variant="caffe")
    with pytest.raises(ValueError, match="groups"):
        models.alexnet(groups=3)
    with pytest.raises(ValueError, match="groups"):
        models.alexnet(variant="torchvision", groups=2)


@pytest.mark.parametrize("variant,groups", [("original", 1), ("original", 2),
                                            ("torchvision", 1)])
def test_alexnet_gradients(variant, groups):
    model = AlexNet(num_classes=3, variant=variant, groups=groups, **SMALL_ALEX)
    side = 227 if variant == "original" else 99      # torchvision's adaptive pool: any size
    check_gradients(model, randn(2, 3, side, side))


def test_alexnet_wrong_input_size_names_layer():
    model = AlexNet(num_classes=5, **SMALL_ALEX)
    with pytest.raises(ValueError) as e:
        model(randn(1, 3, 224, 224, dtype=np.float32))   # 54 -> 26 -> 12 -> 5: 8*5*5 = 200
    msg = str(e.value)
    assert "classifier.0" in msg and "Linear" in msg and "288" in msg and "(1, 200)" in msg


# ----------------------------------------------------------------------------
# VGG
# ----------------------------------------------------------------------------
SMALL_VGG = [4, 4, "M", 8, "M", 8, "M"]


def test_vgg_params_closed_form():
    for depth, count in ((16, 138_357_544), (19, 143_667_240)):
        convs = [v for v in models.vgg.CFGS[depth] if v != "M"]
        total = sum(o * i * 9 + o for i, o in zip([3] + convs[:-1], convs))
        total += (25088 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
        assert total == count
        assert len(convs) == depth - 3


def test_vgg_small_shapes_and_gradients():
    model = VGG(SMALL_VGG, num_classes=3, hidden=8, pool_size=2)
    assert n_params(model) == (4 * 27 + 4) + (4 * 36 + 4) + (8 * 36 + 8) + (8 * 72 + 8) \
        + (32 * 8 + 8) + (8 * 8 + 8) + (8 * 3 + 3)
    x = randn(2, 3, 16, 16, dtype=np.float32)
    sides = []
    for layer in model.features:
        x = layer(x)
        sides.append(x.shape[2])
    assert sides == [16, 16, 16, 16, 8, 8, 8, 4, 4, 4, 2]
    model.eval()
    check_gradients(model, randn(2, 3, 16, 16))


# ----------------------------------------------------------------------------
# ResNet
# ----------------------------------------------------------------------------
def resnet_closed_form(block, layers, num_classes=1000, width=64):
    """Parameter count from the architecture of the paper (conv + BN 2 per channel)."""
    def conv_bn(i, o, k):
        return o * i * k * k + 2 * o
    total, c = conv_bn(3, width, 7), width
    for stage, n in enumerate(layers):
        planes = width * 2 ** stage
        for b in range(n):
            if block == "basic":
                out = planes
                total += conv_bn(c, planes, 3) + conv_bn(planes, planes, 3)
            else:
                out = 4 * planes
                total += conv_bn(c, planes, 1) + conv_bn(planes, planes, 3) \
                    + conv_bn(planes, out, 1)
            if b == 0 and (stage > 0 or c != out):
                total += conv_bn(c, out, 1)
            c = out
    return total + c * num_classes + num_classes


@pytest.mark.parametrize("name,block,layers,count", [
    ("resnet18", "basic", [2, 2, 2, 2], 11_689_512),
    ("resnet34", "basic", [3, 4, 6, 3], 21_797_672),
    ("resnet50", "bottleneck", [3, 4, 6, 3], 25_557_032),
    ("resnet101", "bottleneck", [3, 4, 23, 3], 44_549_160),
    ("resnet152", "bottleneck", [3, 8, 36, 3], 60_192_808)])
def test_resnet_params(name, block, layers, count):
    assert resnet_closed_form(block, layers) == count
    if name in ("resnet18", "resnet50"):           # the big ones are built in the slow test
        assert n_params(getattr(models, name)()) == count


def test_resnet_torchvision_keys():
    check_keys(models.resnet18(), {
        "conv1.weight": (64, 3, 7, 7), "bn1.running_mean": (64,),
        "layer1.0.conv1.weight": (64, 64, 3, 3), "layer1.1.bn2.bias": (64,),
        "layer2.0.conv1.weight": (128, 64, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer2.0.downsample.1.running_mean": (128,),
        "layer4.1.bn2.num_batches_tracked": (), "fc.weight": (1000, 512), "fc.bias": (1000,)})
    r50 = models.resnet50()
    check_keys(r50, {
        "layer1.0.conv1.weight": (64, 64, 1, 1), "layer1.0.conv2.weight": (64, 64, 3, 3),
        "layer1.0.conv3.weight": (256, 64, 1, 1), "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer2.0.conv2.weight": (128, 128, 3, 3), "layer3.5.bn3.running_var": (1024,),
        "layer4.2.bn3.weight": (2048,), "fc.weight": (1000, 2048)})
    assert len(models.resnet18().state_dict()) == 122 and len(r50.state_dict()) == 320
    assert "layer1.1.downsample.0.weight" not in r50.state_dict()       # identity block


def test_resnet_stride_on_3x3_and_blocks():
    r50 = models.resnet50()
    block = r50.layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)   # v1.5
    assert block.downsample[0].stride == (2, 2)
    assert r50.layer1[1].downsample is None and models.resnet18().layer1[0].downsample is None


def test_basic_block_is_relu_of_sum_with_identity():
    """a[l+2] = g(z[l+2] + a[l]): with conv2's weights zero (and BN's beta 0) the
    identity block returns relu(a[l]) = a[l] for a >= 0."""
    block = BasicBlock(4, 4).eval()
    block.conv2.weight.data[...] = 0
    a = Tensor(np.abs(randn(2, 4, 5, 5, dtype=np.float32).data))
    np.testing.assert_allclose(block(a).data, a.data, atol=1e-6)
    block = Bottleneck(16, 4).eval()
    block.conv3.weight.data[...] = 0
    a = Tensor(np.abs(randn(2, 16, 5, 5, dtype=np.float32).data))
    np.testing.assert_allclose(block(a).data, a.data, atol=1e-6)


@pytest.mark.parametrize("block,layers", [(BasicBlock, [1, 2, 1, 1]), (Bottleneck, [1, 1, 1, 1])])
@pytest.mark.parametrize("training", [True, False])
def test_resnet_gradients(block, layers, training):
    model = ResNet(block, layers, num_classes=3, width=4)
    assert n_params(model) == resnet_closed_form(
        "basic" if block is BasicBlock else "bottleneck", layers, 3, 4)
    x = randn(2, 3, 32, 32)
    if not training:                        # non-trivial running statistics first
        model.double()(randn(2, 3, 32, 32, seed=1))
    model.train(training)
    check_gradients(model, x)


# ----------------------------------------------------------------------------
# GoogLeNet
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("variant,aux,count", [
    ("original", False, 6_998_552), ("original", True, 13_378_280),
    ("torchvision", False, 6_624_904), ("torchvision", True, 13_004_888)])
def test_googlenet_params(variant, aux, count):
    assert n_params(models.googlenet(aux_logits=aux, variant=variant)) == count


def test_googlenet_torchvision_keys():
    model = models.googlenet(variant="torchvision")
    check_keys(model, {
        "conv1.conv.weight": (64, 3, 7, 7), "conv1.bn.running_var": (64,),
        "conv2.conv.weight": (64, 64, 1, 1), "conv3.conv.weight": (192, 64, 3, 3),
        "inception3a.branch1.conv.weight": (64, 192, 1, 1),
        "inception3a.branch2.0.conv.weight": (96, 192, 1, 1),
        "inception3a.branch2.1.conv.weight": (128, 96, 3, 3),
        "inception3a.branch3.1.conv.weight": (32, 16, 3, 3),
        "inception3a.branch4.1.conv.weight": (32, 192, 1, 1),
        "inception4e.branch1.bn.num_batches_tracked": (),
        "inception5b.branch4.1.bn.bias": (128,),
        "aux1.conv.conv.weight": (128, 512, 1, 1), "aux1.fc1.weight": (1024, 2048),
        "aux1.fc2.weight": (1000, 1024), "aux2.conv.conv.weight": (128, 528, 1, 1),
        "fc.weight": (1000, 1024), "fc.bias": (1000,)})
    assert model.conv1.bn.eps == 0.001 and model.conv1.conv.bias is None
    original = models.googlenet()
    assert original.inception3a.branch3[1].conv.weight.shape == (32, 16, 5, 5)   # a real 5x5
    assert "conv1.bn.weight" not in original.state_dict()                        # no BN


def small_googlenet(variant, aux_logits=True):
    return GoogLeNet(num_classes=3, aux_logits=aux_logits, variant=variant, width=1 / 16)


@pytest.mark.parametrize("variant", ["original", "torchvision"])
def test_googlenet_train_and_eval_outputs(variant):
    model = small_googlenet(variant)
    x = randn(2, 3, 224, 224, dtype=np.float32)
    out = model(x)                                            # train(): three outputs
    assert isinstance(out, tuple) and [o.shape for o in out] == [(2, 3)] * 3
    model.eval()
    logits = model(x)
    assert isinstance(logits, Tensor) and logits.shape == (2, 3)
    assert not isinstance(small_googlenet(variant, aux_logits=False)(x), tuple)


def test_googlenet_shapes_ceil_mode():
    model = small_googlenet("original").eval()
    x = randn(1, 3, 224, 224, dtype=np.float32)
    sides = {}
    for name in ("conv1", "maxpool1", "lrn1", "conv2", "conv3", "lrn2", "maxpool2",
                 "inception3a", "inception3b", "maxpool3", "inception4a", "inception4b",
                 "inception4c", "inception4d", "inception4e", "maxpool4", "inception5a",
                 "inception5b", "avgpool"):
        x = getattr(model, name)(x)
        sides[name] = x.shape[2]
    assert [sides[k] for k in ("conv1", "maxpool1", "maxpool2", "maxpool3", "maxpool4",
                               "avgpool")] == [112, 56, 28, 14, 7, 1]


def test_googlenet_loss_weights_aux_by_0_3():
    model = small_googlenet("torchvision")
    x, target = randn(4, 3, 224, 224, dtype=np.float32), Tensor(np.array([0, 2, 1, 2]))
    minidl.manual_seed(1)
    outputs = model(x)
    loss = models.googlenet_loss(outputs, target)

    def ce(logits):                                  # NumPy cross-entropy, mean over N
        z = logits.data.astype(np.float64)
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return -logp[np.arange(4), target.data].mean()
    logits, aux2, aux1 = outputs
    np.testing.assert_allclose(loss.item(), ce(logits) + 0.3 * (ce(aux1) + ce(aux2)), rtol=1e-5)
    np.testing.assert_allclose(models.googlenet_loss(logits, target).item(), ce(logits),
                               rtol=1e-5)


@pytest.mark.parametrize("variant", ["original", "torchvision"])
def test_googlenet_gradients_with_aux_heads(variant):
    model = small_googlenet(variant)
    check_gradients(model, randn(2, 3, 224, 224))


def test_googlenet_transform_input():
    model = GoogLeNet(num_classes=3, variant="torchvision", width=1 / 16,
                      transform_input=True, aux_logits=False).eval()
    x = randn(1, 3, 8, 8, dtype=np.float32)
    y = model._transform_input(x).data
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = ((x.data * std[:, None, None] + mean[:, None, None]) - 0.5) / 0.5
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="transform_input"):
        models.googlenet(transform_input=True)


# ----------------------------------------------------------------------------
# registry used by the command line
# ----------------------------------------------------------------------------
def test_get_and_input_shape():
    assert isinstance(models.get("lenet5", num_classes=4), models.LeNet5)
    assert models.input_shape("alexnet") == (3, 227, 227)
    assert models.input_shape("lenet5") == (1, 32, 32)
    with pytest.raises(ValueError, match="unknown network"):
        models.get("inception_v4")


# ----------------------------------------------------------------------------
# every full-size network, built and run once at batch 1
# ----------------------------------------------------------------------------
ALEXNET_TV_KEYS = {
    "features.0.weight": (64, 3, 11, 11), "features.3.weight": (192, 64, 5, 5),
    "features.6.weight": (384, 192, 3, 3), "features.8.weight": (256, 384, 3, 3),
    "features.10.weight": (256, 256, 3, 3), "classifier.1.weight": (4096, 9216),
    "classifier.4.weight": (4096, 4096), "classifier.6.weight": (1000, 4096)}
VGG16_KEYS = {
    "features.0.weight": (64, 3, 3, 3), "features.2.weight": (64, 64, 3, 3),
    "features.28.weight": (512, 512, 3, 3), "features.28.bias": (512,),
    "classifier.0.weight": (4096, 25088), "classifier.3.weight": (4096, 4096),
    "classifier.6.weight": (1000, 4096)}
VGG19_KEYS = {"features.34.weight": (512, 512, 3, 3), "classifier.6.bias": (1000,)}
RESNET152_KEYS = {"layer3.35.conv3.weight": (1024, 256, 1, 1), "layer2.7.bn1.bias": (128,)}

# name, builder arguments, parameters, input side, torchvision keys (number, sample)
FULL = [
    ("alexnet", dict(), 62_378_344, 227, None),
    ("alexnet", dict(groups=2), 60_965_224, 227, None),
    ("alexnet", dict(variant="torchvision"), 61_100_840, 224, (16, ALEXNET_TV_KEYS)),
    ("vgg16", dict(), 138_357_544, 224, (32, VGG16_KEYS)),
    ("vgg19", dict(), 143_667_240, 224, (38, VGG19_KEYS)),
    ("resnet18", dict(), 11_689_512, 224, None),
    ("resnet34", dict(), 21_797_672, 224, None),
    ("resnet50", dict(), 25_557_032, 224, None),
    ("resnet101", dict(), 44_549_160, 224, None),
    ("resnet152", dict(), 60_192_808, 224, (932, RESNET152_KEYS)),
    ("googlenet", dict(), 13_378_280, 224, None),
    ("googlenet", dict(variant="torchvision"), 13_004_888, 224, None),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,kwargs,count,side,keys", FULL,
                         ids=[f"{n}-{'-'.join(map(str, k.values())) or 'default'}"
                              for n, k, *_ in FULL])
def test_full_size_forward(name, kwargs, count, side, keys):
    minidl.manual_seed(0)
    model = models.get(name, **kwargs).eval()
    assert n_params(model) == count
    if keys is not None:
        assert len(model.state_dict()) == keys[0]
        check_keys(model, keys[1])
    with minidl.no_grad():
        y = model(randn(1, 3, side, side, dtype=np.float32))
    assert y.shape == (1, 1000) and np.isfinite(y.data).all()
    if name == "alexnet" and not kwargs:
        with pytest.raises(ValueError) as e:
            with minidl.no_grad():
                model(randn(1, 3, 224, 224, dtype=np.float32))
        msg = str(e.value)
        assert "classifier.0" in msg and "Linear" in msg and "9216" in msg \
            and "(1, 6400)" in msg
