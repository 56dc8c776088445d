"""minidl.nn: Module machinery, containers, layers (against naive NumPy), init."""
import math
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minidl
from minidl import Tensor, gradcheck, nn
from minidl.nn import init

SETTINGS = settings(max_examples=20, deadline=None)


def t(a, grad=False):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


class Net(nn.Module):
    """features (conv, BN, ReLU, pool) -> flatten -> classifier; a buffer of its own."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4),
                                      nn.ReLU(), nn.MaxPool2d(2))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(16, 5))
        self.register_buffer("steps", Tensor(np.zeros(2, np.float32)))

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


NET_KEYS = ["features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias",
            "features.1.running_mean", "features.1.running_var",
            "features.1.num_batches_tracked", "classifier.1.weight", "classifier.1.bias"]


# ----------------------------------------------------------------------------
# registration and the module tree
# ----------------------------------------------------------------------------
def test_state_dict_names_shapes_and_buffers():
    net = Net()
    sd = net.state_dict()
    assert list(sd) == ["steps"] + NET_KEYS     # PyTorch's order: own params, own buffers, children
    assert sd["features.0.weight"].shape == (4, 3, 3, 3)
    assert sd["classifier.1.weight"].shape == (5, 16)
    assert sd["features.1.num_batches_tracked"].dtype == np.int64
    assert sd["features.1.num_batches_tracked"].shape == ()
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    sd["features.0.weight"][...] = 7                   # a copy, not the parameter
    assert not np.any(net.features[0].weight.data == 7)


def test_named_parameters_buffers_children_modules():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == [k for k in NET_KEYS if "running" not in k and "tracked" not in k]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert [n for n, _ in net.named_buffers()] == [
        "steps", "features.1.running_mean", "features.1.running_var",
        "features.1.num_batches_tracked"]
    assert [n for n, _ in net.named_children()] == ["features", "flatten", "classifier"]
    assert [n for n, _ in net.named_modules()] == [
        "", "features", "features.0", "features.1", "features.2", "features.3", "flatten",
        "classifier", "classifier.0", "classifier.1"]
    assert len(list(net.modules())) == 10 and len(list(net.children())) == 3


def test_shared_parameter_and_module_are_listed_once():
    lin = nn.Linear(3, 3)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    assert len(list(model.modules())) == 3
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)
            self.b.weight = self.a.weight
    assert [n for n, _ in Tied().named_parameters()] == ["a.weight", "a.bias", "b.bias"]


def test_attribute_registration_rules():
    m = nn.Module()
    m.w = nn.Parameter(np.ones(2, np.float32))
    m.child = nn.Linear(2, 2)
    m.register_buffer("buf", Tensor(np.zeros(2)))
    m.plain = 3
    assert set(m._parameters) == {"w"} and set(m._modules) == {"child"}
    assert set(m._buffers) == {"buf"} and m.plain == 3
    m.w = None                                          # allowed: stays registered as None
    assert "w" in m._parameters and m.w is None and list(m.named_parameters())[0][0] == \
        "child.weight"
    with pytest.raises(TypeError, match=r"cannot assign Tensor as parameter 'w'"):
        m.w = Tensor(np.ones(2))
    with pytest.raises(TypeError, match="buffer 'buf'"):
        m.buf = np.ones(2)
    m.buf = Tensor(np.ones(3))
    assert m.buf.shape == (3,)
    m.child = nn.ReLU()                                 # replace a layer
    assert isinstance(m.child, nn.ReLU)
    del m.child
    assert "child" not in m._modules
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        m.nope
    with pytest.raises(KeyError, match="without '.'"):
        m.register_buffer("a.b", None)

    class Forgot(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)
    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Forgot()


def test_parameter_is_a_tensor_requiring_grad():
    p = nn.Parameter(np.zeros((2, 3), np.float32))
    assert isinstance(p, Tensor) and p.requires_grad and p.shape == (2, 3)
    assert repr(p).startswith("Parameter containing:")
    q = p * 2
    assert type(q) is Tensor


def test_train_eval_recursive_and_apply():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(TypeError):
        net.train("no")
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and seen.index("Conv2d") < seen.index("Sequential")


def test_zero_grad_and_requires_grad_():
    model = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1))
    model(minidl.randn(4, 3)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model[0].requires_grad_(False)                      # freeze the first layer
    model(minidl.randn(4, 3)).sum().backward()
    assert model[0].weight.grad is None and model[2].weight.grad is not None
    assert model.requires_grad_(True) is model and model[0].weight.requires_grad


def test_double_float_and_to_keep_parameter_objects():
    net = Net()
    w = net.features[0].weight
    assert net.double() is net and net.features[0].weight is w
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net.features[1].running_var.dtype == np.float64
    assert net.features[1].num_batches_tracked.dtype == np.int64
    net.float()
    assert all(p.dtype == np.float32 for p in net.parameters())
    assert net.to("cpu") is net and w.device == "cpu"
    with pytest.raises(ValueError, match="device must be"):
        net.to("tpu")


@pytest.mark.skipif(minidl.cuda_is_available(), reason="checks the no-GPU error")
def test_to_cuda_without_gpu_raises_clearly():
    with pytest.raises(RuntimeError, match="GPU|CuPy"):
        nn.Linear(2, 2).to("cuda")


def test_repr_like_pytorch():
    model = nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), act=nn.ReLU(inplace=True),
        pool=nn.AdaptiveAvgPool2d((1, 1)), flat=nn.Flatten(),
        head=nn.Sequential(nn.Dropout(0.5), nn.Linear(8, 2))))
    assert repr(model) == """Sequential(
  (conv): Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False)
  (act): ReLU(inplace=True)
  (pool): AdaptiveAvgPool2d(output_size=(1, 1))
  (flat): Flatten(start_dim=1, end_dim=-1)
  (head): Sequential(
    (0): Dropout(p=0.5)
    (1): Linear(in_features=8, out_features=2, bias=True)
  )
)"""
    assert repr(nn.BatchNorm2d(4)) == ("BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, "
                                       "track_running_stats=True)")
    assert repr(nn.MaxPool2d(3, 2)) == ("MaxPool2d(kernel_size=3, stride=2, padding=0, "
                                        "ceil_mode=False)")
    assert repr(nn.LocalResponseNorm(5)) == "LocalResponseNorm(5, alpha=0.0001, beta=0.75, k=2.0)"
    assert repr(nn.Softmax(dim=1)) == "Softmax(dim=1)" and repr(nn.Tanh()) == "Tanh()"


# ----------------------------------------------------------------------------
# load_state_dict
# ----------------------------------------------------------------------------
def test_load_state_dict_round_trip_keeps_dtype():
    src, dst = Net(), Net()
    src.features[1].running_mean.data[:] = 3
    src.features[1].num_batches_tracked.data[...] = 9
    sd = {k: v.astype(np.float64) if v.dtype == np.float32 else v
          for k, v in src.state_dict().items()}
    result = dst.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for k, v in dst.state_dict().items():
        np.testing.assert_allclose(v, src.state_dict()[k], rtol=1e-7)
    assert dst.features[0].weight.dtype == np.float32
    assert int(dst.features[1].num_batches_tracked.item()) == 9
    dst.load_state_dict({k: Tensor(v) for k, v in src.state_dict().items()})   # Tensors too


def test_load_state_dict_strict_lists_every_problem_at_once():
    net = Net()
    before = net.state_dict()
    sd = Net().state_dict()
    del sd["features.0.bias"], sd["features.1.running_var"]           # 2 missing
    sd["fc.weight"] = np.zeros((2, 2))                                  # unexpected
    sd["classifier.1.weight"] = np.zeros((10, 16))                      # wrong shape
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(sd)
    msg = str(info.value)
    for part in ["Net", "missing keys (2)", "features.0.bias", "features.1.running_var",
                 "unexpected keys (1)", "fc.weight", "shape mismatches (1)",
                 "classifier.1.weight: checkpoint (10, 16) float64, model (5, 16)"]:
        assert part in msg, part
    for k, v in net.state_dict().items():                               # nothing copied
        np.testing.assert_array_equal(v, before[k])


def test_load_state_dict_non_strict():
    net, other = Net(), Net()
    sd = other.state_dict()
    del sd["classifier.1.bias"]
    sd["extra"] = np.ones(1)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["classifier.1.bias"] and result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(net.classifier[1].weight.data, other.classifier[1].weight.data)
    sd["classifier.1.weight"] = np.zeros((1, 1))
    with pytest.raises(RuntimeError, match="shape mismatches"):        # never silent
        net.load_state_dict(sd, strict=False)
    sd["classifier.1.weight"] = np.full((5, 16), "x")
    with pytest.raises(RuntimeError, match=r"classifier.1.weight: checkpoint \(5, 16\) <U1"):
        net.load_state_dict(sd, strict=False)


# ----------------------------------------------------------------------------
# containers
# ----------------------------------------------------------------------------
def test_sequential_indexing_slicing_and_replacing():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3 and list(seq) == [a, b, c]
    assert seq[0] is a and seq[-1] is c
    head = seq[1:]
    assert isinstance(head, nn.Sequential) and list(head._modules) == ["1", "2"]
    seq[2] = nn.Linear(3, 4)                            # transfer learning: a new head
    assert seq(minidl.randn(5, 2)).shape == (5, 4)
    assert seq.append(nn.Sigmoid()) is seq and list(seq._modules)[-1] == "3"
    with pytest.raises(IndexError, match="out of range"):
        seq[4]
    named = nn.Sequential(OrderedDict(fc=nn.Linear(2, 2), act=nn.Tanh()))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"] and named.act is named[1]


def test_module_list():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(2)])
    layers.append(nn.Linear(2, 3))
    layers.extend([nn.ReLU()])
    assert len(layers) == 4 and isinstance(layers[2], nn.Linear)
    assert [n for n, _ in layers.named_parameters()][:2] == ["0.weight", "0.bias"]
    assert len(list(layers.parameters())) == 6
    assert isinstance(layers[1:], nn.ModuleList) and len(layers[1:]) == 3
    x = minidl.randn(1, 2)
    for layer in layers:
        x = layer(x)
    assert x.shape == (1, 3)
    with pytest.raises(NotImplementedError, match="ModuleList"):
        layers(x)


# ----------------------------------------------------------------------------
# errors that name the layer
# ----------------------------------------------------------------------------
def test_linear_and_conv_errors_name_layer_and_shapes():
    with pytest.raises(ValueError, match=r"Linear expected.*in_features=9216.*\(1, 6400\)"):
        nn.Linear(9216, 10)(minidl.zeros(1, 6400))
    with pytest.raises(ValueError, match=r"Conv2d expected input \(N, 3, H, W\).*"
                                         r"\(2, 4, 8, 8\): a 4-channel input"):
        nn.Conv2d(3, 8, 3)(minidl.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match=r"BatchNorm2d expected.*num_features=3"):
        nn.BatchNorm2d(3)(minidl.zeros(2, 5, 4, 4))
    with pytest.raises(ValueError, match=r"MaxPool2d expected a 4-D input.*\(3, 8, 8\)"):
        nn.MaxPool2d(2)(minidl.zeros(3, 8, 8))


def test_network_error_names_the_layer_by_dotted_path():
    net = Net()
    with pytest.raises(ValueError) as info:
        net(minidl.zeros(2, 3, 6, 6))                    # flattens to 36, not 16
    assert str(info.value).startswith("in Net, layer classifier.1: Linear expected")
    assert "(2, 36)" in str(info.value) and "in_features=16" in str(info.value)
    with pytest.raises(ValueError, match=r"^in Net, layer features\.0: Conv2d.*4-channel"):
        net(minidl.zeros(2, 4, 4, 4))
    net.eval()
    assert net(minidl.zeros(2, 3, 4, 4)).shape == (2, 5)  # the call stack unwound cleanly


def test_error_from_an_unregistered_or_op_level_call():
    class Odd(nn.Module):
        def forward(self, x):
            return nn.Linear(2, 2)(x)                    # built on the fly, not registered

    with pytest.raises(ValueError, match=r"^in Odd, layer <Linear>: Linear expected"):
        Odd()(minidl.zeros(1, 3))
    small = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(4))   # the op itself refuses
    with pytest.raises(ValueError, match=r"^in Sequential, layer 1 \(MaxPool2d\): .*\(4, 4\)"):
        small(minidl.zeros(1, 1, 4, 4))


# ----------------------------------------------------------------------------
# layers against NumPy
# ----------------------------------------------------------------------------
def test_linear_layer_forward_and_default_init():
    lin = nn.Linear(3, 2)
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    w, b = lin.weight.data, lin.bias.data
    expected = np.array([[sum(x[n, i] * w[o, i] for i in range(3)) + b[o] for o in range(2)]
                         for n in range(4)])
    np.testing.assert_allclose(lin(Tensor(x)).data, expected, rtol=1e-5, atol=1e-6)
    assert lin.weight.dtype == np.float32 and nn.Linear(3, 2, bias=False).bias is None


def test_activations_softmax_flatten_identity():
    x = np.random.default_rng(1).standard_normal((2, 3, 4))
    np.testing.assert_allclose(nn.ReLU()(t(x)).data, np.where(x > 0, x, 0))
    np.testing.assert_allclose(nn.Tanh()(t(x)).data, np.tanh(x))
    np.testing.assert_allclose(nn.Sigmoid()(t(x)).data, 1 / (1 + np.exp(-x)))
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(nn.Softmax(dim=1)(t(x)).data, e / e.sum(1, keepdims=True))
    np.testing.assert_allclose(nn.LogSoftmax(dim=1)(t(x)).data,
                               np.log(e / e.sum(1, keepdims=True)))
    assert nn.Flatten()(t(x)).shape == (2, 12) and nn.Flatten(0)(t(x)).shape == (24,)
    assert nn.Identity()(t(x)).shape == x.shape


def test_dropout_layer_train_and_eval():
    drop = nn.Dropout(0.25)
    x = np.random.default_rng(2).uniform(1, 2, (50, 40))
    y = drop(t(x)).data
    np.testing.assert_allclose(y[y != 0], x[y != 0] / 0.75)
    assert 0.15 < (y == 0).mean() < 0.35
    drop.eval()
    np.testing.assert_array_equal(drop(t(x)).data, x)
    with pytest.raises(ValueError, match=r"Dropout: p must be .* got 1"):
        nn.Dropout(1)


def test_batchnorm2d_training_eval_and_running_statistics():
    rng = np.random.default_rng(3)
    bn = nn.BatchNorm2d(2, momentum=0.1).double()
    bn.weight.data[:] = [2.0, 0.5]
    bn.bias.data[:] = [0.1, -1.0]
    batches = [rng.standard_normal((3, 2, 2, 2)) * 2 + 1 for _ in range(2)]
    mean_ref, var_ref = np.zeros(2), np.ones(2)
    for x in batches:
        y = bn(t(x)).data
        for c in range(2):                               # hand computation, per channel
            v = x[:, c].ravel()
            m, s2 = v.mean(), ((v - v.mean()) ** 2).sum() / v.size
            np.testing.assert_allclose(y[:, c], (x[:, c] - m) / np.sqrt(s2 + 1e-5)
                                       * bn.weight.data[c] + bn.bias.data[c], rtol=1e-10)
            mean_ref[c] = 0.9 * mean_ref[c] + 0.1 * m
            var_ref[c] = 0.9 * var_ref[c] + 0.1 * s2 * v.size / (v.size - 1)
    np.testing.assert_allclose(bn.running_mean.data, mean_ref, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.data, var_ref, rtol=1e-12)
    assert int(bn.num_batches_tracked.item()) == 2
    bn.eval()
    x = batches[0]
    expected = ((x - mean_ref[None, :, None, None]) / np.sqrt(var_ref[None, :, None, None] + 1e-5)
                * bn.weight.data[None, :, None, None] + bn.bias.data[None, :, None, None])
    np.testing.assert_allclose(bn(t(x)).data, expected, rtol=1e-10)
    assert int(bn.num_batches_tracked.item()) == 2       # eval leaves the buffers


def test_batchnorm2d_momentum_none_no_tracking_no_affine():
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((2, 1, 3, 3)) for _ in range(3)]
    bn = nn.BatchNorm2d(1, momentum=None).double()
    for x in xs:
        bn(t(x))
    np.testing.assert_allclose(bn.running_mean.data, [np.mean([x.mean() for x in xs])])
    free = nn.BatchNorm2d(1, affine=False, track_running_stats=False).eval()
    assert list(free.state_dict()) == [] and list(free.parameters()) == []
    y = free(t(xs[0])).data                             # batch statistics, even in eval
    np.testing.assert_allclose(y, (xs[0] - xs[0].mean()) / np.sqrt(xs[0].var() + 1e-5))


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2), nn.Sigmoid()),
    lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3), nn.LogSoftmax(dim=1)),
])
def test_gradcheck_sequential_input_and_parameters(make):
    minidl.manual_seed(0)
    model = make().double()
    names = [n for n, _ in model.named_parameters()]
    params = [t(p.data, True) for p in model.parameters()]
    modules = dict(model.named_modules())

    def fn(x, *ps):
        for name, p in zip(names, ps):                  # run the model on gradcheck's copies
            owner, _, attr = name.rpartition(".")
            modules[owner]._parameters[attr] = p
        return model(x)
    x = t(np.random.default_rng(5).standard_normal((5, 3)), True)
    assert gradcheck(fn, [x] + params)


def test_gradcheck_batchnorm_module_train_and_eval():
    rng = np.random.default_rng(6)
    for training in (True, False):
        bn = nn.BatchNorm2d(2).double().train(training)
        bn.running_var.data[:] = [0.5, 2.0]
        x = t(rng.standard_normal((2, 2, 2, 3)), True)
        assert gradcheck(lambda a: bn(a), [x])


# ----------------------------------------------------------------------------
# conv / pooling / LRN modules against naive loops (the ops are in ops/*.py)
# ----------------------------------------------------------------------------
def naive_conv2d(x, w, b, stride, pad, dil, groups):
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    ho = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, f, ho, wo))
    fg = f // groups
    for i in range(n):
        for o in range(f):
            g = o // fg
            for y in range(ho):
                for z in range(wo):
                    acc = 0.0 if b is None else b[o]
                    for ci in range(cg):
                        for p in range(kh):
                            for q in range(kw):
                                acc += (w[o, ci, p, q] * xp[i, g * cg + ci, y * stride[0]
                                        + p * dil[0], z * stride[1] + q * dil[1]])
                    out[i, o, y, z] = acc
    return out


@SETTINGS
@given(groups=st.sampled_from([1, 2]), k=st.integers(1, 3), stride=st.integers(1, 2),
       pad=st.integers(0, 1), dil=st.integers(1, 2), bias=st.booleans(),
       seed=st.integers(0, 999))
def test_conv2d_layer_matches_naive_loops(groups, k, stride, pad, dil, bias, seed):
    minidl.manual_seed(seed)
    conv = nn.Conv2d(2, 4, k, stride=stride, padding=pad, dilation=dil, groups=groups,
                     bias=bias).double()
    assert conv.weight.shape == (4, 2 // groups, k, k)
    x = np.random.default_rng(seed).standard_normal((2, 2, 5, 6))
    expected = naive_conv2d(x, conv.weight.data, None if conv.bias is None else conv.bias.data,
                            (stride,) * 2, (pad,) * 2, (dil,) * 2, groups)
    np.testing.assert_allclose(conv(t(x)).data, expected, rtol=1e-10, atol=1e-10)


def test_conv2d_settings_and_default_init():
    conv = nn.Conv2d(16, 32, (3, 5), stride=(2, 1), padding=1)
    assert conv.kernel_size == (3, 5) and conv.stride == (2, 1) and conv.padding == (1, 1)
    bound = 1 / math.sqrt(16 * 3 * 5)
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.bias.data).max() <= bound
    assert np.abs(conv.weight.data).max() > 0.95 * bound
    np.testing.assert_allclose(conv.weight.data.std(), bound / math.sqrt(3), rtol=0.05)
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding"):
        nn.Conv2d(3, 4, 3, padding="full")
    assert nn.Conv2d(3, 4, 3, padding="same").padding == "same"


def naive_pool(x, k, s, pad, reduce, fill):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=fill)
    ho, wo = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
    out = np.zeros((n, c, ho, wo))
    for y in range(ho):
        for z in range(wo):
            out[:, :, y, z] = reduce(xp[:, :, y * s:y * s + k, z * s:z * s + k], axis=(2, 3))
    return out


def test_pooling_layers_match_naive_loops():
    x = np.random.default_rng(7).standard_normal((2, 3, 7, 6))
    np.testing.assert_allclose(nn.MaxPool2d(3, 2, 1)(t(x)).data,
                               naive_pool(x, 3, 2, 1, np.max, -np.inf))
    np.testing.assert_allclose(nn.MaxPool2d(2)(t(x)).data, naive_pool(x, 2, 2, 0, np.max, 0))
    np.testing.assert_allclose(nn.AvgPool2d(3, 2, 1)(t(x)).data,
                               naive_pool(x, 3, 2, 1, np.mean, 0.0), rtol=1e-12)
    out = nn.AdaptiveAvgPool2d((3, 2))(t(x)).data
    for i in range(3):                                   # PyTorch's bins: floor / ceil
        for j in range(2):
            h0, h1 = (i * 7) // 3, -(-(i + 1) * 7 // 3)
            w0, w1 = (j * 6) // 2, -(-(j + 1) * 6 // 2)
            np.testing.assert_allclose(out[:, :, i, j], x[:, :, h0:h1, w0:w1].mean((2, 3)))


def test_local_response_norm_layer_matches_formula():
    x = np.random.default_rng(8).standard_normal((2, 6, 3, 3))
    size, alpha, beta, k = 3, 0.5, 0.75, 2.0
    y = nn.LocalResponseNorm(size, alpha, beta, k)(t(x)).data
    expected = np.empty_like(x)
    for c in range(6):                                   # window of `size` centred on c
        lo, hi = max(0, c - size // 2), min(6, c + (size - 1) // 2 + 1)
        s = (x[:, lo:hi] ** 2).sum(axis=1)
        expected[:, c] = x[:, c] / (k + alpha * s) ** beta
    np.testing.assert_allclose(y, expected, rtol=1e-10)


# ----------------------------------------------------------------------------
# init
# ----------------------------------------------------------------------------
def test_calculate_gain():
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("conv2d") == 1
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")


def big(shape, dtype=np.float32):
    return Tensor(np.zeros(shape, dtype))


@pytest.mark.parametrize("mode,nonlinearity", [("fan_in", "relu"), ("fan_out", "relu"),
                                               ("fan_in", "tanh"), ("fan_out", "linear")])
def test_kaiming_statistics(mode, nonlinearity):
    w = big((256, 64, 3, 3))                             # fan_in 576, fan_out 2304
    fan = 576 if mode == "fan_in" else 2304
    std = init.calculate_gain(nonlinearity) / math.sqrt(fan)
    init.kaiming_uniform_(w, mode=mode, nonlinearity=nonlinearity)
    bound = math.sqrt(3) * std
    assert np.abs(w.data).max() <= bound and np.abs(w.data).max() > 0.99 * bound
    np.testing.assert_allclose(w.data.std(), std, rtol=0.02)
    init.kaiming_normal_(w, mode=mode, nonlinearity=nonlinearity)
    np.testing.assert_allclose(w.data.std(), std, rtol=0.02)
    assert abs(w.data.mean()) < 5 * std / math.sqrt(w.size)


def test_xavier_statistics_and_basic_fills():
    w = big((300, 500), np.float64)
    std = math.sqrt(2 / 800)
    init.xavier_uniform_(w, gain=2.0)
    assert np.abs(w.data).max() <= 2 * math.sqrt(3) * std
    np.testing.assert_allclose(w.data.std(), 2 * std, rtol=0.02)
    init.xavier_normal_(w)
    np.testing.assert_allclose(w.data.std(), std, rtol=0.02)
    assert w.dtype == np.float64
    init.uniform_(w, -1, 3)
    assert w.data.min() >= -1 and w.data.max() < 3
    np.testing.assert_allclose(w.data.mean(), 1, atol=0.02)
    assert init.normal_(w, 2.0, 0.5) is w
    np.testing.assert_allclose([w.data.mean(), w.data.std()], [2, 0.5], atol=0.01)
    for fill, value in [(lambda a: init.constant_(a, 0.3), 0.3), (init.zeros_, 0),
                        (init.ones_, 1)]:
        assert np.all(fill(w).data == value)


def test_init_is_seeded_and_checks_arguments():
    a, b = big((4, 5)), big((4, 5))
    minidl.manual_seed(3)
    init.kaiming_uniform_(a)
    minidl.manual_seed(3)
    init.kaiming_uniform_(b)
    np.testing.assert_array_equal(a.data, b.data)
    with pytest.raises(ValueError, match=r"at least 2 dims.*\(5,\)"):
        init.xavier_uniform_(big((5,)))
    with pytest.raises(ValueError, match="fan_in' or 'fan_out'"):
        init.kaiming_normal_(a, mode="fan_avg")
    with pytest.raises(TypeError, match="expected a Tensor"):
        init.zeros_(np.zeros(3))


def test_linear_default_init_bounds_on_a_big_layer():
    lin = nn.Linear(1000, 400)
    bound = 1 / math.sqrt(1000)                          # kaiming_uniform(a=sqrt(5))
    assert np.abs(lin.weight.data).max() <= bound and np.abs(lin.bias.data).max() <= bound
    np.testing.assert_allclose(lin.weight.data.std(), bound / math.sqrt(3), rtol=0.02)


def test_functional_call_swaps_and_restores_parameters():
    import numpy as np
    import minidl
    from minidl.nn import functional_call
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    x = minidl.randn(4, 3)
    zeros = [minidl.zeros(*p.shape) for p in model.parameters()]
    np.testing.assert_array_equal(functional_call(model, zeros, x).numpy(), np.zeros((4, 1)))
    before = [p for p in model.parameters()]
    assert all(a is b for a, b in zip(before, model.parameters()))     # restored
    assert model(x).numpy().any()
    with pytest.raises(ValueError, match="4 parameters, got 1"):
        functional_call(model, zeros[:1], x)
