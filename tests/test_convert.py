"""minidl.convert: torchvision state_dict -> minidl .npz, tested without torch.

The synthetic torchvision state_dicts are dicts of NumPy arrays with
torchvision's names and shapes: a few keys typed in by hand from torchvision
(checked first), the rest taken from our torchvision-variant model. A fake
``torch`` module stands in for the real one to run the command line end to
end; the real one is never imported.
"""
import sys
import types

import numpy as np
import pytest

from minidl import convert, models
from minidl.io import load

# torchvision names and shapes, typed in from torchvision's models
KNOWN = {
    "resnet18": {"conv1.weight": (64, 3, 7, 7), "layer1.0.conv1.weight": (64, 64, 3, 3),
                 "layer2.0.downsample.0.weight": (128, 64, 1, 1),
                 "layer2.0.downsample.1.running_mean": (128,),
                 "layer3.1.bn2.num_batches_tracked": (), "fc.weight": (1000, 512)},
    "resnet50": {"layer1.0.conv3.weight": (256, 64, 1, 1),
                 "layer4.0.conv2.weight": (512, 512, 3, 3),
                 "layer4.0.downsample.0.weight": (2048, 1024, 1, 1), "fc.weight": (1000, 2048)},
    "alexnet": {"features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
                "features.10.weight": (256, 256, 3, 3), "classifier.1.weight": (4096, 9216),
                "classifier.6.bias": (1000,)},
    "googlenet": {"conv1.conv.weight": (64, 3, 7, 7), "conv1.bn.running_mean": (64,),
                  "inception3a.branch2.1.conv.weight": (128, 96, 3, 3),
                  "inception3a.branch3.1.conv.weight": (32, 16, 3, 3),
                  "inception4e.branch4.1.bn.weight": (128,), "aux1.fc2.weight": (1000, 1024),
                  "aux2.fc1.weight": (1024, 2048), "fc.weight": (1000, 1024)},
}
BUILD = {"resnet18": models.resnet18, "resnet50": models.resnet50,
         "alexnet": lambda: models.alexnet(variant="torchvision"),
         "googlenet": lambda: models.googlenet(variant="torchvision")}


def synthetic_torchvision(arch, model, seed=0):
    """A torchvision-like state_dict of ``arch``: every name and shape of
    ``model`` (checked against KNOWN); array i holds the value i + seed + 0.5
    everywhere (integer buffers: i + seed), so a swapped name shows."""
    state = {}
    for i, (name, value) in enumerate(model.state_dict().items()):
        state[name] = np.full(value.shape, i + seed + (0 if value.dtype.kind == "i" else 0.5),
                              dtype=value.dtype)
    for name, shape in KNOWN[arch].items():
        assert state[name].shape == shape, f"{arch} {name}: {state[name].shape} != {shape}"
    return state


@pytest.mark.parametrize("arch", sorted(KNOWN))
def test_converted_state_dict_loads_strict(arch):
    model = BUILD[arch]()
    source = synthetic_torchvision(arch, model)
    converted = convert.convert_state_dict(source, arch)
    assert list(converted) == list(source)                      # identity mapping, same order
    model.load_state_dict(converted, strict=True)
    state = model.state_dict()
    for name in source:
        np.testing.assert_array_equal(state[name], source[name])


def test_map_name_is_identity_and_archs_are_checked():
    assert convert.map_name("layer1.0.conv1.weight", "resnet50") == "layer1.0.conv1.weight"
    for arch in ("lenet5", "alexnet_original", "googlenet_original", "resnet200"):
        with pytest.raises(ValueError, match="convertible archs: alexnet, vgg16"):
            convert.convert_state_dict({}, arch)
    assert set(convert.CONVERTIBLE) <= set(models.NETWORKS)


def test_missing_torch_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)              # "import torch" fails
    with pytest.raises(RuntimeError, match="needs PyTorch"):
        convert.read_torch_state_dict(str(tmp_path / "x.pth"))


class FakeTensor:
    """What torch.load returns, as far as the converter uses it."""

    def __init__(self, array):
        self.array = array

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.array


def fake_torch(state, wrap=False):
    module = types.ModuleType("torch")

    def load(path, map_location=None, weights_only=False):
        assert map_location == "cpu" and weights_only
        tensors = {k: FakeTensor(v) for k, v in state.items()}
        return {"state_dict": tensors, "epoch": 3} if wrap else tensors
    module.load = load
    return module


@pytest.mark.parametrize("wrap", [False, True])
def test_command_line_end_to_end(monkeypatch, tmp_path, capsys, wrap):
    model = models.resnet18()
    source = synthetic_torchvision("resnet18", model, seed=1)
    monkeypatch.setitem(sys.modules, "torch", fake_torch(source, wrap))
    out = tmp_path / "resnet18.npz"
    assert convert.main([str(tmp_path / "resnet18.pth"), str(out), "--arch", "resnet18"]) == 0
    assert "wrote" in capsys.readouterr().out
    loaded = load(str(out))
    model.load_state_dict(loaded, strict=True)
    np.testing.assert_array_equal(model.state_dict()["layer2.0.downsample.0.weight"],
                                  source["layer2.0.downsample.0.weight"])


def test_command_line_errors(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert convert.main(["in.pth", str(tmp_path / "out.npz"), "--arch", "vgg16"]) == 2
    assert "needs PyTorch" in capsys.readouterr().err
    with pytest.raises(SystemExit):                             # argparse: not a choice
        convert.main(["in.pth", "out.npz", "--arch", "lenet5"])
