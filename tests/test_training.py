"""Training loop, checkpoints and resume; transfer learning; ensembling and ten-crop."""
import os

import numpy as np
import pytest

import minidl
from minidl import nn, optim
from minidl.data import DataLoader, TensorDataset, load_digits
from minidl.ensemble import Ensemble, predict, predict_ten_crop, ten_crop
from minidl.ops.loss import softmax
from minidl.training import evaluate, fit, load_checkpoint
from minidl.transfer import (FrozenTrunkClassifier, freeze_prefix, precompute_features,
                             replace_head, trainable_parameters)


def digits8(n=400):
    """Small 8x8 digits for fast tests: (N, 1, 8, 8) float32 and labels."""
    x, y = load_digits(8, "train")
    return x[:n], y[:n]


def mlp(seed=0, p=0.2):
    minidl.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(p),
                         nn.Linear(32, 10))


def loaders(seed=0):
    x, y = digits8()
    train = DataLoader(TensorDataset(x[:300], y[:300]), batch_size=20, shuffle=True, seed=seed)
    test = DataLoader(TensorDataset(x[300:], y[300:]), batch_size=50)
    return train, test


def run(epochs, checkpoint, model_seed=0):
    model = mlp(model_seed)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = optim.StepLR(opt, step_size=1, gamma=0.7)
    train, test = loaders()
    history = fit(model, train, test, opt, epochs, scheduler=sched, checkpoint=checkpoint,
                  progress=False, log=lambda *a: None)
    return model, history


def test_fit_learns_and_writes_checkpoint(tmp_path):
    model, history = run(4, str(tmp_path / "ck.npz"))
    assert history[-1]["test_accuracy"] > 0.8
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert os.path.exists(tmp_path / "ck.npz")


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    straight, h1 = run(3, str(tmp_path / "a.npz"))
    run(1, str(tmp_path / "b.npz"))                            # stop after one epoch
    minidl.manual_seed(999)                                    # disturb the generator
    resumed, h2 = run(3, str(tmp_path / "b.npz"), model_seed=5)  # other init: loaded over
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert [h["epoch"] for h in h2] == [1, 2, 3]
    assert h1[-1]["test_accuracy"] == h2[-1]["test_accuracy"]


def test_ctrl_c_saves_and_keeps_the_last_checkpoint(tmp_path):
    ck = str(tmp_path / "ck.npz")
    run(1, ck)
    before = open(ck, "rb").read()
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    train, test = loaders()
    calls = {"n": 0}

    def interrupting_loss(out, y):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return minidl.nn.functional.cross_entropy(out, y)

    with pytest.raises(KeyboardInterrupt):
        fit(model, train, test, opt, 3, checkpoint=ck, loss_fn=interrupting_loss,
            progress=False, log=lambda *a: None)
    assert open(ck, "rb").read() == before                 # last full epoch intact
    assert os.path.exists(tmp_path / "ck.interrupted.npz")
    epoch, _ = load_checkpoint(str(tmp_path / "ck.interrupted.npz"), mlp())
    assert epoch == 1


def test_bad_checkpoint_is_refused_by_name(tmp_path):
    bad = tmp_path / "notes.npz"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="notes.npz"):
        load_checkpoint(str(bad), mlp())
    other = tmp_path / "weights.npz"
    minidl.save({"something": np.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="weights.npz"):
        load_checkpoint(str(other), mlp())


def test_float_labels_rejected(tmp_path):
    model = mlp()
    x, y = digits8(40)
    train = DataLoader(TensorDataset(x, y.astype(np.float32)), batch_size=20)
    with pytest.raises(TypeError, match="integer"):
        fit(model, train, train, optim.SGD(model.parameters(), lr=0.1), 1, progress=False,
            log=lambda *a: None)


# ----------------------------------------------------------------------------
# transfer learning
# ----------------------------------------------------------------------------
def conv_trunk(seed=0):
    minidl.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))


def test_frozen_trunk_and_precomputed_features_reach_the_same_head(tmp_path):
    x, y = digits8(300)
    trunk = conv_trunk()
    minidl.manual_seed(1)
    head_a = nn.Linear(32, 10)
    head_b = nn.Linear(32, 10)
    head_b.load_state_dict(head_a.state_dict())

    # route 1: trunk + head on every batch, only the head learns
    model = FrozenTrunkClassifier(trunk, head_a)
    assert trainable_parameters(model) == list(head_a.parameters())
    opt = optim.SGD(trainable_parameters(model), lr=0.05, momentum=0.9)
    end_to_end = DataLoader(TensorDataset(x, y), batch_size=30, shuffle=True, seed=3)
    fit(model, end_to_end, end_to_end, opt, 3, progress=False, log=lambda *a: None)

    # route 2: features once (saved to disk), then the head alone, same batches
    path = str(tmp_path / "features.npz")
    feats = precompute_features(trunk, DataLoader(TensorDataset(x, y), batch_size=64), path)
    assert os.path.exists(path) and feats.arrays[0].shape == (300, 32)
    opt_b = optim.SGD(head_b.parameters(), lr=0.05, momentum=0.9)
    on_features = DataLoader(feats, batch_size=30, shuffle=True, seed=3)
    fit(head_b, on_features, on_features, opt_b, 3, progress=False, log=lambda *a: None)

    np.testing.assert_allclose(head_a.weight.numpy(), head_b.weight.numpy(), atol=1e-4)
    acc_a = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=100))["accuracy"]
    acc_b = evaluate(head_b, DataLoader(feats, batch_size=100))["accuracy"]
    assert abs(acc_a - acc_b) < 1e-9
    # the trunk did not move
    np.testing.assert_array_equal(trunk[0].weight.numpy(), conv_trunk()[0].weight.numpy())
    # a second call reads the saved features instead of recomputing
    again = precompute_features(None, None, path)
    np.testing.assert_array_equal(again.arrays[0], feats.arrays[0])


def test_freeze_prefix_and_replace_head():
    model = minidl.models.ResNet(minidl.models.BasicBlock, [1, 1, 1, 1], num_classes=5,
                                 width=4)
    frozen = freeze_prefix(model, "layer3")
    assert frozen[-1] == "layer3" and "layer4" not in frozen
    assert not any(p.requires_grad for p in model.layer2.parameters())
    assert all(p.requires_grad for p in model.layer4.parameters())
    new = replace_head(model, "fc", 3)
    assert model.fc is new and new.weight.shape == (3, model.fc.in_features)
    out = model(minidl.randn(2, 3, 32, 32))
    out.sum().backward()
    assert model.conv1.weight.grad is None and model.fc.weight.grad is not None
    with pytest.raises(ValueError, match="layer9"):
        freeze_prefix(model, "layer9")
    with pytest.raises(TypeError, match="Linear"):
        replace_head(model, "layer4", 3)


# ----------------------------------------------------------------------------
# ensembling and multi-crop
# ----------------------------------------------------------------------------
def test_ensemble_averages_softmax_outputs():
    a, b = mlp(1).eval(), mlp(2).eval()
    x = minidl.Tensor(digits8(6)[0])
    probs = Ensemble([a, b]).eval()(x).numpy()
    manual = (softmax(a(x), 1).numpy() + softmax(b(x), 1).numpy()) / 2
    np.testing.assert_allclose(probs, manual, rtol=1e-6)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(predict(Ensemble([a, b]), x).numpy(), manual, rtol=1e-6)


def test_ten_crop_views():
    x = np.arange(2 * 3 * 6 * 7, dtype=np.float32).reshape(2, 3, 6, 7)
    v = ten_crop(x, 4).numpy()
    assert v.shape == (10, 2, 3, 4, 4)
    np.testing.assert_array_equal(v[0], x[:, :, :4, :4])
    np.testing.assert_array_equal(v[1], x[:, :, :4, 3:])
    np.testing.assert_array_equal(v[2], x[:, :, 2:, :4])
    np.testing.assert_array_equal(v[3], x[:, :, 2:, 3:])
    np.testing.assert_array_equal(v[4], x[:, :, 1:5, 1:5])
    for k in range(5):
        np.testing.assert_array_equal(v[5 + k], v[k][..., ::-1])
    with pytest.raises(ValueError, match="larger"):
        ten_crop(x, 7)


def test_predict_ten_crop_is_the_mean_over_views():
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    x = minidl.randn(3, 1, 6, 6)
    probs = predict_ten_crop(model, x, 4).numpy()
    views = ten_crop(x, 4)
    manual = np.mean([softmax(model(views[k]), 1).numpy() for k in range(10)], axis=0)
    np.testing.assert_allclose(probs, manual, rtol=1e-6)


def test_ten_crop_of_an_ensemble_averages_probabilities_once():
    a, b = mlp(1).eval(), mlp(2).eval()
    x = minidl.Tensor(np.random.default_rng(0).standard_normal((3, 1, 10, 10)).astype(np.float32))
    ens = Ensemble([a, b]).eval()
    views = ten_crop(x, 8, mirror=False)
    assert views.shape[0] == 5
    probs = predict_ten_crop(ens, x, 8, mirror=False).numpy()
    manual = np.mean([(softmax(a(views[k]), 1).numpy() + softmax(b(views[k]), 1).numpy()) / 2
                      for k in range(5)], axis=0)
    np.testing.assert_allclose(probs, manual, rtol=1e-6)


@pytest.mark.skipif(not minidl.cuda_is_available(), reason="needs a CUDA GPU and CuPy")
def test_fit_on_the_gpu_moves_the_cpu_batches(tmp_path):
    model = mlp().to("cuda")
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train, test = loaders()
    history = fit(model, train, test, opt, 2, checkpoint=str(tmp_path / "ck.npz"),
                  progress=False, log=lambda *a: None)
    assert history[-1]["test_accuracy"] > 0.5
    assert all(p.device == "cuda" for p in model.parameters())
