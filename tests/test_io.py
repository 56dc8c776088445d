"""minidl.io: .npz checkpoints, never pickle, written atomically."""
import os
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import minidl
from minidl import Tensor, nn
from minidl.io import load, save


def assert_same(a, b):
    """Recursive equality of loaded and saved objects (tuples come back as lists)."""
    if isinstance(b, Tensor):
        b = b.numpy()
    if isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(b, dict):
        assert isinstance(a, dict) and list(a) == list(b)
        for k in b:
            assert_same(a[k], b[k])
    elif isinstance(b, (list, tuple)):
        assert isinstance(a, list) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b and type(a) is type(b)


def test_checkpoint_round_trip(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2))
    model(minidl.randn(2, 1, 4, 4))                     # moves the BN running stats
    ckpt = {"model": model.state_dict(),
            "optimizer": {"state": {0: {"momentum_buffer": np.ones((2, 3))}},
                          "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1]}]},
            "epoch": 3, "best": 0.25, "arch": "tiny", "done": False, "note": None,
            "tensor": Tensor(np.arange(4.0)), "scalar": np.float32(1.5),
            "meta": np.array('{"classes": ["cat", "dog"]}')}   # a 0-d string array
    path = tmp_path / "ckpt.npz"
    save(ckpt, path)
    back = load(path)
    expected = dict(ckpt, scalar=1.5)                   # NumPy scalars come back as Python
    assert_same(back, expected)
    assert back["model"]["1.num_batches_tracked"].dtype == np.int64
    fresh = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2))
    fresh.load_state_dict(back["model"])                # strict
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[k], v)


def test_the_file_is_a_plain_npz_with_readable_names(tmp_path):
    path = tmp_path / "m.npz"
    save({"model": {"0.weight": np.ones((2, 2))}, "epoch": 1}, str(path))
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["__minidl__", "model/0.weight"]
    with zipfile.ZipFile(path) as z:                    # nothing but .npy members
        assert all(name.endswith(".npy") for name in z.namelist())


@settings(max_examples=30, deadline=None)
@given(arrays=st.dictionaries(
    st.text(st.characters(codec="ascii", exclude_characters="/\x00"), min_size=0, max_size=6),
    hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_,
                                np.float16, np.complex64]),
               hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)),
    max_size=4))
def test_round_trip_of_any_numeric_arrays(tmp_path_factory, arrays):
    path = tmp_path_factory.mktemp("h") / "a.npz"
    obj = {"outer": arrays, "list": list(arrays.values())}
    save(obj, path)
    back = load(path)
    assert list(back["outer"]) == list(arrays)
    for a, b in zip(list(back["outer"].values()) + back["list"],
                    list(arrays.values()) * 2):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_colliding_member_names_stay_distinct(tmp_path):
    obj = {"a/b": np.zeros(1), "a": {"b": np.ones(1)}, "__minidl__": np.full(1, 2.0)}
    save(obj, tmp_path / "c.npz")
    assert_same(load(tmp_path / "c.npz"), obj)


def test_save_refuses_what_would_need_pickle(tmp_path):
    path = tmp_path / "x.npz"
    with pytest.raises(TypeError, match="model/w is an array of dtype object"):
        save({"model": {"w": np.array([{}, 1], dtype=object)}}, path)
    with pytest.raises(TypeError, match="cannot save a set at opt"):
        save({"opt": {1, 2}}, path)
    with pytest.raises(TypeError, match="keys must be str or int"):
        save({(1, 2): np.ones(1)}, path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save({}, tmp_path / "no" / "dir" / "x.npz")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------
# atomicity
# ----------------------------------------------------------------------------
def test_a_failure_mid_write_keeps_the_old_checkpoint_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    old = {"w": np.arange(3.0)}
    save(old, path)
    real_write = np.lib.format.write_array
    calls = []

    def write_then_fail(fp, array, **kwargs):
        calls.append(1)
        if len(calls) == 3:                             # the record and one array are written
            raise OSError("disk full (simulated)")
        real_write(fp, array, **kwargs)
    monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save({"w": np.zeros(1000), "v": np.ones(1000)}, path)
    assert os.listdir(tmp_path) == ["ckpt.npz"]         # no temp file left behind
    assert_same(load(path), old)


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_a_failure_at_fsync_or_rename_keeps_the_old_checkpoint(tmp_path, monkeypatch, step):
    path = tmp_path / "ckpt.npz"
    save({"w": np.ones(2)}, path)

    def fail(*args):
        raise OSError(f"{step} failed (simulated)")
    monkeypatch.setattr(os, step, fail)
    with pytest.raises(OSError, match="simulated"):
        save({"w": np.zeros(2)}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    np.testing.assert_array_equal(load(path)["w"], np.ones(2))


def test_save_overwrites_an_existing_checkpoint(tmp_path):
    path = tmp_path / "c.npz"
    save({"epoch": 1}, path)
    save({"epoch": 2}, path)
    assert load(path) == {"epoch": 2} and os.listdir(tmp_path) == ["c.npz"]


# ----------------------------------------------------------------------------
# refusing files that are not minidl checkpoints
# ----------------------------------------------------------------------------
class _Marker:
    """Unpickling this creates a file: proof that the pickle was executed."""
    path = None

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_is_refused_and_never_executed(tmp_path):
    marker = _Marker()
    marker.path = str(tmp_path / "pwned")
    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"model": marker}))
    with pytest.raises(ValueError, match=r"evil\.pt.*not a minidl checkpoint.*pickle"):
        load(bad)
    assert not os.path.exists(marker.path)


def test_a_pickled_member_inside_a_checkpoint_is_refused(tmp_path):
    marker = _Marker()
    marker.path = str(tmp_path / "pwned")
    good, path = tmp_path / "good.npz", tmp_path / "c.npz"
    save({"w": np.ones(2)}, good)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
        dst.writestr("__minidl__.npy", src.read("__minidl__.npy"))       # a genuine record
        with dst.open("w.npy", "w") as member:                           # w: a pickle
            np.lib.format.write_array(member, np.array([marker], dtype=object))
    with pytest.raises(ValueError, match=r"c\.npz.*allow_pickle"):
        load(path)
    assert not os.path.exists(marker.path)


def test_other_files_are_refused_naming_the_path(tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, w=np.ones(2))
    with pytest.raises(ValueError, match=r"plain\.npz.*not a minidl checkpoint.*record"):
        load(plain)
    single = tmp_path / "one.npy"
    np.save(single, np.ones(2))
    with pytest.raises(ValueError, match=r"one\.npy.*not a minidl checkpoint.*\.npy"):
        load(single)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt.*not an \.npz"):
        load(text)
    with pytest.raises(FileNotFoundError, match=r"missing\.npz"):
        load(tmp_path / "missing.npz")


def test_truncated_and_tampered_checkpoints_are_refused(tmp_path):
    path = tmp_path / "c.npz"
    save({"w": np.ones(100)}, path)
    data = path.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.npz.*corrupt or truncated"):
        load(cut)
    newer = tmp_path / "newer.npz"
    with zipfile.ZipFile(newer, "w") as z, z.open("__minidl__.npy", "w") as member:
        record = '{"format": "minidl-checkpoint", "version": 99, "tree": null}'
        np.lib.format.write_array(member, np.array(record))
    with pytest.raises(ValueError, match=r"newer\.npz.*version 99"):
        load(newer)
