"""minidl.summary: per-layer shapes, parameters, MACs and output memory.

References: the case studies' numbers (120,422,400 and 12,443,648
multiplies; VGG-16 ~15.47 G MACs; the LeNet-5 / AlexNet / VGG shape
sequences) and closed forms N*OH*OW*O*(C/groups)*kh*kw for drawn conv
settings; LeNet-5's MACs counted by hand.
"""
import pytest
from hypothesis import given, settings, strategies as st

import minidl
from minidl import models, nn
from minidl.models.alexnet import AlexNet
from minidl.models.googlenet import GoogLeNet
from minidl.models.vgg import VGG
from minidl.summary import summary


def conv_rows(s):
    return [r for r in s.rows if r.type in ("Conv2d", "MaxPool2d", "AvgPool2d")]


def test_case_study_5x5_conv_cost():
    s = summary(nn.Conv2d(192, 32, 5, padding=2), (192, 28, 28))
    assert s.macs == 120_422_400                         # 28*28*32 * 5*5*192
    assert s.rows[0].output_shape == (1, 32, 28, 28)
    assert s.params == 32 * 192 * 25 + 32


def test_case_study_bottleneck_cost():
    block = nn.Sequential(nn.Conv2d(192, 16, 1), nn.Conv2d(16, 32, 5, padding="same"))
    s = summary(block, (192, 28, 28))
    assert [r.macs for r in s.rows] == [16 * 192 * 784, 32 * 16 * 25 * 784]
    assert s.macs == 12_443_648
    assert [r.name for r in s.rows] == ["0", "1"]
    assert [r.output_shape for r in s.rows] == [(1, 16, 28, 28), (1, 32, 28, 28)]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 2), c_per_group=st.integers(1, 3), o_per_group=st.integers(1, 3),
       groups=st.integers(1, 3), k=st.integers(1, 4), stride=st.integers(1, 3),
       padding=st.integers(0, 2), h=st.integers(4, 9), w=st.integers(4, 9))
def test_conv_macs_closed_form(n, c_per_group, o_per_group, groups, k, stride, padding, h, w):
    c, o = c_per_group * groups, o_per_group * groups
    s = summary(nn.Conv2d(c, o, k, stride=stride, padding=padding, groups=groups),
                (n, c, h, w))
    oh, ow = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    assert s.rows[0].output_shape == (n, o, oh, ow)
    assert s.macs == n * oh * ow * o * c_per_group * k * k
    assert s.activations == n * o * oh * ow * 4                      # float32 bytes
    assert s.params == o * c_per_group * k * k + o


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 4), fin=st.integers(1, 20), fout=st.integers(1, 20))
def test_linear_macs_closed_form(n, fin, fout):
    model = nn.Sequential(nn.Flatten(), nn.Linear(fin, fout), nn.ReLU())
    s = summary(model, (n, fin, 1, 1))
    assert [r.macs for r in s.rows] == [0, n * fin * fout, 0]
    assert s.params == fin * fout + fout


def test_lenet5_table():
    s = summary(models.lenet5(), (1, 32, 32))
    assert [r.output_shape[2] for r in conv_rows(s)] == [28, 14, 10, 5]
    assert [r.name for r in s.rows][:3] == ["features.0", "features.1", "features.2"]
    assert s.rows[0].type == "Conv2d" and s.rows[1].type == "Tanh"
    assert s.params == 61_706 == sum(r.params for r in s.rows)
    # by hand: 28*28*6*25 + 10*10*16*150 + 400*120 + 120*84 + 84*10
    assert s.macs == 117_600 + 240_000 + 48_000 + 10_080 + 840
    assert s.rows[0].activations == 6 * 28 * 28 * 4
    assert s.rows[-1].output_shape == (1, 10)


def test_alexnet_shapes_and_batch():
    model = AlexNet(num_classes=10, channels=(4, 4, 4, 4, 4), hidden=8)
    s1 = summary(model, (3, 227, 227))
    pools = [r.output_shape[2] for r in s1.rows if r.type in ("Conv2d", "MaxPool2d")]
    assert pools[:2] == [55, 27] and pools[3] == 13 and pools[-1] == 6
    s3 = summary(model, (3, 3, 227, 227))               # (N, C, H, W): MACs scale with N
    assert s3.macs == 3 * s1.macs and s3.activations == 3 * s1.activations
    assert s3.rows[0].output_shape == (3, 4, 55, 55)


def test_vgg_shape_sequence_small():
    """The same VGG-16 code (configuration D) with 1/64 of the widths: 224 .. 7."""
    cfg = [v if v == "M" else v // 64 for v in models.vgg.CFGS[16]]
    s = summary(VGG(cfg, num_classes=10, hidden=8), (3, 224, 224))
    pools = [r.output_shape[2] for r in s.rows if r.type == "MaxPool2d"]
    assert pools == [112, 56, 28, 14, 7]
    assert s.rows[0].output_shape[2] == 224


def test_modes_and_forwards_restored():
    model = GoogLeNet(num_classes=10, width=1 / 16)
    model.train()
    model.aux1.eval()                                     # a mixed state is kept as it was
    s = summary(model, (3, 224, 224))
    assert model.training and not model.aux1.training and model.aux2.training
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert all(not r.name.startswith("aux") for r in s.rows)   # eval: no aux heads
    n_aux = sum(int(p.size) for head in (model.aux1, model.aux2) for p in head.parameters())
    assert s.params == sum(int(p.size) for p in model.parameters())
    assert sum(r.params for r in s.rows) == s.params - n_aux
    assert "did not run" in str(s)
    assert isinstance(model(minidl.randn(1, 3, 224, 224)), tuple)


def test_reused_module_counts_params_once():
    relu = nn.ReLU()
    lin = nn.Linear(3, 3)
    model = nn.Sequential(nn.Flatten(), nn.Sequential(lin, relu, lin, relu))  # used twice
    s = summary(model, (2, 3, 1, 1))
    assert [r.type for r in s.rows] == ["Flatten", "Linear", "ReLU", "Linear", "ReLU"]
    assert [r.params for r in s.rows] == [0, 12, 0, 0, 0]
    assert s.macs == 2 * 2 * 9 and s.params == 12


def test_table_is_aligned():
    text = str(summary(models.lenet5(), (1, 32, 32)))
    lines = text.splitlines()          # input, rule, header, rule, 11 rows, rule, totals
    assert lines[1] == lines[3] == lines[15] and set(lines[1]) == {"-"}
    assert len({len(line) for line in [lines[2]] + lines[4:15]}) == 1
    assert "features.0 (Conv2d)" in text and "(1, 6, 28, 28)" in text
    assert "Total params: 61,706" in text and "Total MACs: 416,520" in text


def test_wrong_input_size_names_layer_and_cleans_up():
    model = models.lenet5()
    with pytest.raises(ValueError, match=r"classifier\.0\b.*Linear.*400.*\(1, 256\)"):
        summary(model, (1, 28, 28))
    assert model.training and all("forward" not in m.__dict__ for m in model.modules())


def test_dtype_follows_model_and_bad_shape():
    s = summary(models.lenet5().double(), (1, 32, 32))
    assert s.rows[0].activations == 6 * 28 * 28 * 8
    with pytest.raises(ValueError, match="input_shape"):
        summary(models.lenet5(), (32, 32))
    with pytest.raises(ValueError, match="input_shape"):
        summary(models.lenet5(), (1, 0, 32, 32))


@pytest.mark.slow
def test_vgg16_full_size_macs():
    s = summary(models.vgg16(), (3, 224, 224))
    assert round(s.macs / 1e9, 2) == 15.47
    assert s.params == 138_357_544
    convs = [r for r in s.rows if r.type == "Conv2d"]
    assert [r.output_shape[1:] for r in convs][:2] == [(64, 224, 224)] * 2
    assert convs[-1].output_shape == (1, 512, 14, 14)
    assert [r.output_shape[2] for r in s.rows if r.type == "MaxPool2d"] == [112, 56, 28, 14, 7]
    # closed form: 3x3 convs of configuration D, then the three fc layers
    cfg, side, c, macs = models.vgg.CFGS[16], 224, 3, 0
    for v in cfg:
        if v == "M":
            side //= 2
        else:
            macs, c = macs + side * side * v * c * 9, v
    macs += 25088 * 4096 + 4096 * 4096 + 4096 * 1000
    assert s.macs == macs == 15_470_264_320
