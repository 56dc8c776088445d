"""The experiments of experiments/ (the case studies' claims): each script's
--quick version runs and returns sane results, and the facts the claims rest
on hold.

Facts, not training luck: MACs and parameter counts against closed forms
typed in from the lectures; the identity block against its definition
(relu(0 + a) = a for a >= 0) on hypothesis-drawn shapes; the max-pool branch
against a NumPy loop; the two transfer routes against each other (same
mathematics); ensemble and multi-crop accuracies against argmax computed by
hand. Outcomes that depend on training (which method wins) are not asserted.
"""
import os
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments"))

import common                                                     # noqa: E402
import data_augmentation                                          # noqa: E402
import ensembling                                                 # noqa: E402
import inception                                                  # noqa: E402
import one_by_one_conv                                            # noqa: E402
import plain_vs_residual                                          # noqa: E402
import transfer_learning                                          # noqa: E402
import why_resnets_work                                           # noqa: E402

import minidl                                                     # noqa: E402
from minidl import nn                                             # noqa: E402
from minidl.models import BasicBlock                              # noqa: E402
from minidl.tensor import Tensor, no_grad                         # noqa: E402


def quick(module, tmp_path, *extra):
    """Run a script's reduced version, writing into tmp_path; check its files."""
    result = module.main(["--quick", "--out", str(tmp_path), *extra])
    for ext in ("md", "png"):
        path = tmp_path / f"{module.NAME}.{ext}"
        assert path.exists() and path.stat().st_size > 0, path
    assert f"python experiments/{module.NAME}.py --quick" in (tmp_path / f"{module.NAME}.md"
                                                              ).read_text()
    return result


# ----------------------------------------------------------------------------
# common
# ----------------------------------------------------------------------------
def test_digits_relabels_and_standardises():
    (xtr, ytr), (xte, yte) = common.digits(8, classes=[7, 3])
    raw_tr, raw_ytr = minidl.data.load_digits(8, "train")
    assert set(np.unique(ytr)) == {0, 1} and set(np.unique(yte)) == {0, 1}
    assert (ytr == 0).sum() == (raw_ytr == 7).sum() and (ytr == 1).sum() == (raw_ytr == 3).sum()
    mean, std = raw_tr.mean(), raw_tr.std()           # statistics of the whole train split
    np.testing.assert_allclose(xtr[ytr == 0], (raw_tr[raw_ytr == 7] - mean) / std, rtol=1e-5)


def test_per_class_subset_draws_k_distinct_per_class():
    y = np.repeat(np.arange(4), 10)
    pick = common.per_class_subset(y, 3, seed=1)
    assert len(np.unique(pick)) == 12
    assert np.bincount(y[pick]).tolist() == [3, 3, 3, 3]
    with pytest.raises(ValueError):
        common.per_class_subset(y, 11, seed=0)        # more than a class holds


def test_report_command_omits_the_output_folder(tmp_path):
    args = common.parse(common.parser("x", seeds=2), ["--seeds", "3", "--out", str(tmp_path)])
    assert common.command("name", args) == "python experiments/name.py --seeds 3"
    assert common.markdown_table(["a", "b"], [[1, 2]]) == "| a | b |\n|---|---|\n| 1 | 2 |"
    assert common.mean_std([1.0, 3.0]) == "2.0 ± 1.4"
    with pytest.raises(SystemExit):
        common.parse(common.parser("x", seeds=2), ["--seeds", "0"])


# ----------------------------------------------------------------------------
# 1. plain vs residual
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [8, 14, 20])
def test_deep_net_has_depth_weight_layers_and_the_same_main_path(depth):
    nets = {r: plain_vs_residual.DeepNet(depth, residual=r) for r in (False, True)}
    for net in nets.values():
        main_path = [m for name, m in net.named_modules()
                     if isinstance(m, (nn.Conv2d, nn.Linear)) and "shortcut" not in name]
        assert len(main_path) == depth
    plain = dict(nets[False].named_parameters())
    residual = dict(nets[True].named_parameters())
    extra = set(residual) - set(plain)
    assert set(plain) <= set(residual) and all(".shortcut." in k for k in extra)
    assert all(plain[k].shape == residual[k].shape for k in plain)
    with no_grad():
        assert nets[True](Tensor(np.zeros((3, 1, 8, 8), np.float32))).shape == (3, 10)


def test_deep_net_rejects_a_depth_that_is_not_6n_plus_2():
    with pytest.raises(ValueError, match="6n"):
        plain_vs_residual.DeepNet(10, residual=True)


def test_plain_vs_residual_quick_returns_curves(tmp_path):
    r = quick(plain_vs_residual, tmp_path)
    assert set(r["runs"]) == {(k, d) for k in ("plain", "residual") for d in r["depths"]}
    for run in r["runs"].values():
        assert run["error_curves"].shape == (1, r["epochs"])       # (seeds, epochs)
        assert np.all((run["error_curves"] >= 0) & (run["error_curves"] <= 100))
        assert np.all(np.isfinite(run["loss_curves"]))


# ----------------------------------------------------------------------------
# 2. why ResNets work
# ----------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 4), c=st.integers(1, 6), h=st.integers(1, 6), w=st.integers(1, 6),
       dtype=st.sampled_from([np.float32, np.float64]), training=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_residual_block_with_zero_weights_is_the_identity(n, c, h, w, dtype, training, seed):
    minidl.manual_seed(seed)
    block = BasicBlock(c, c)
    block = block.double() if dtype == np.float64 else block
    why_resnets_work.zero_last_layer(block)
    a = np.maximum(np.random.default_rng(seed).standard_normal((n, c, h, w)), 0).astype(dtype)
    assert why_resnets_work.identity_gap(block, a, training) <= 1e-6
    signed = np.random.default_rng(seed + 1).standard_normal((n, c, h, w)).astype(dtype)
    # a negative input is cut by the last ReLU: relu(a) - a = max(-a, 0)
    np.testing.assert_allclose(why_resnets_work.identity_gap(block, signed, training),
                               max(-signed.min(), 0.0), rtol=1e-6)


def test_plain_block_with_zero_weights_outputs_zero():
    block = why_resnets_work.zero_last_layer(plain_vs_residual.Block(3, 3, residual=False))
    a = np.random.default_rng(0).random((2, 3, 5, 5)).astype(np.float32)
    with no_grad():
        assert np.abs(block(Tensor(a)).data).max() == 0


def test_why_resnets_work_quick(tmp_path):
    r = quick(why_resnets_work, tmp_path)
    rows = {name.strip(): (train, ev) for name, train, ev, _ in r["identity"]}
    assert max(rows["residual block, W[l+2] = 0, b[l+2] = 0"]) <= 1e-6
    assert min(rows["plain block, W[l+2] = 0, b[l+2] = 0"]) > 0.1
    assert r["shrinking"]["residual"][0] <= 1e-6                   # scale 0: the identity
    for (kind, depth), norms in r["norms"].items():
        assert all(len(v) == depth - 1 for v in norms)             # stem + 2 per block
        assert all(np.all(np.isfinite(v) & (v > 0)) for v in norms)


# ----------------------------------------------------------------------------
# 3. 1x1 convolutions and 4. the Inception module
# ----------------------------------------------------------------------------
def test_one_by_one_conv_costs_are_the_lectures(tmp_path):
    r = quick(one_by_one_conv, tmp_path)["results"]
    direct, bottleneck = r["direct 5x5"], r["1x1 to 16, then 5x5"]
    assert direct["macs"] == 28 * 28 * 32 * 5 * 5 * 192 == 120_422_400
    assert bottleneck["macs"] == 28 * 28 * 16 * 192 + 28 * 28 * 32 * 5 * 5 * 16 == 12_443_648
    assert direct["params"] == 192 * 32 * 25 + 32
    assert bottleneck["params"] == (192 * 16 + 16) + (16 * 32 * 25 + 32)
    assert direct["output"] == bottleneck["output"] == (2, 32, 28, 28)
    assert direct["forward_s"] > 0 and bottleneck["forward_backward_s"] > 0


def test_inception_costs_match_closed_forms(tmp_path):
    r = quick(inception, tmp_path)["results"]
    naive, bottleneck = r["naive"], r["with 1x1 bottlenecks"]
    px = 28 * 28
    assert naive["macs"] == px * 192 * (64 + 128 * 9 + 32 * 25)
    assert bottleneck["macs"] == px * (192 * 64 + 192 * 96 + 96 * 9 * 128 + 192 * 16
                                       + 16 * 25 * 32 + 192 * 32)
    assert naive["params"] == 192 * (64 + 128 * 9 + 32 * 25) + 64 + 128 + 32
    assert naive["output"] == (1, 64 + 128 + 32 + 192, 28, 28)
    assert bottleneck["output"] == (1, 64 + 128 + 32 + 32, 28, 28)
    assert bottleneck["branches"]["branch3"] == 12_443_648      # the 1x1-conv example


def test_naive_inception_pool_branch_is_a_3x3_max_pool():
    module = inception.NaiveInception(4, 2, 3, 1)
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 6)).astype(np.float32)
    with no_grad():
        out = module(Tensor(x)).data
    assert out.shape == (2, 2 + 3 + 1 + 4, 5, 6)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    pooled = np.empty_like(x)
    for i in range(5):
        for j in range(6):
            pooled[:, :, i, j] = padded[:, :, i:i + 3, j:j + 3].max(axis=(2, 3))
    np.testing.assert_array_equal(out[:, 6:], pooled)


# ----------------------------------------------------------------------------
# 5. transfer learning
# ----------------------------------------------------------------------------
def test_frozen_trunk_and_precomputed_features_train_the_same_head():
    (x, y), _ = common.digits(32, range(5, 10))
    x, y = x[:40], y[:40]
    minidl.manual_seed(0)
    state = transfer_learning.lenet(5).state_dict()            # any weights will do
    heads = []
    for precomputed in (False, True):
        trunk = transfer_learning.trunk_of(transfer_learning.lenet(5, state))
        minidl.manual_seed(1)
        head = nn.Linear(84, 5)
        if precomputed:
            features = minidl.transfer.precompute_features(trunk, common.loader(x, y, 64, 0,
                                                                                shuffle=False))
            transfer_learning.fit_steps(head, *features.arrays, 6, 0.05, seed=3)
        else:
            model = minidl.transfer.FrozenTrunkClassifier(trunk, head)
            transfer_learning.fit_steps(model, x, y, 6, 0.05, seed=3,
                                        params=minidl.transfer.trainable_parameters(model))
        heads.append(head.weight.numpy())
    np.testing.assert_allclose(heads[0], heads[1], rtol=1e-4, atol=1e-6)


def test_pretrained_lenet_keeps_the_trunk_and_gets_a_new_head():
    minidl.manual_seed(0)
    state = transfer_learning.lenet(5).state_dict()
    model = transfer_learning.lenet(3, state)
    np.testing.assert_array_equal(model.features[0].weight.numpy(), state["features.0.weight"])
    assert model.classifier[4].weight.shape == (3, 84)
    with no_grad():
        feats = transfer_learning.trunk_of(model)(Tensor(np.zeros((2, 1, 32, 32), np.float32)))
    assert feats.shape == (2, 84)


def test_transfer_learning_quick(tmp_path):
    r = quick(transfer_learning, tmp_path)
    (k,) = r["labels"]
    acc = {m: r["accuracy"][(m, k)] for m in transfer_learning.METHODS}
    assert acc["frozen trunk + new head"].tolist() == acc["same, precomputed features"].tolist()
    assert acc["frozen trunk + new head"].min() > 30                # chance: 20%
    assert all(np.all((a >= 0) & (a <= 100)) for a in acc.values())


# ----------------------------------------------------------------------------
# 6. data augmentation
# ----------------------------------------------------------------------------
def test_augmentation_keeps_the_size_and_fills_with_the_background():
    aug = data_augmentation.augmentation(fill=-0.5)
    blank = np.full((1, 32, 32), -0.5, np.float32)
    out = aug(blank, np.random.default_rng(0))
    assert out.shape == (1, 32, 32)
    np.testing.assert_allclose(out, blank, atol=1e-6)


def test_data_augmentation_quick(tmp_path):
    r = quick(data_augmentation, tmp_path)
    for k in r["labels"]:
        for augment in (False, True):
            a = r["accuracy"][(k, augment)]
            assert len(a) == 1 and 0 <= a[0] <= 100


# ----------------------------------------------------------------------------
# 7. ensembling and multi-crop
# ----------------------------------------------------------------------------
def test_evaluate_all_against_hand_computed_argmax():
    rng = np.random.default_rng(0)
    probs = rng.random((3, 10, 7, 4))                 # (members, views, N, classes)
    y = rng.integers(0, 4, 7)
    r = ensembling.evaluate_all(probs, y)
    centre = [100 * np.mean([probs[m, 4, i].argmax() == y[i] for i in range(7)])
              for m in range(3)]
    assert r["single"] == pytest.approx(centre)
    averaged = [(probs[0, 4, i] + probs[1, 4, i]) / 2 for i in range(7)]
    assert r["ensemble"][1] == pytest.approx(100 * np.mean([p.argmax() == t
                                                            for p, t in zip(averaged, y)]))
    five = [probs[2, :5, i].sum(0).argmax() == y[i] for i in range(7)]
    assert r["five_crop"][2] == pytest.approx(100 * np.mean(five))


def test_ensembling_quick(tmp_path):
    out = quick(ensembling, tmp_path)
    (r,) = out["results"].values()
    assert r["ensemble"][-1] >= min(r["single"])
    member, x = r["members"][0], out["xte"][:6]
    probs = minidl.ensemble.predict_ten_crop(member, x, 32)
    assert probs.shape == (6, 10)
    np.testing.assert_allclose(probs.numpy().sum(1), 1, rtol=1e-5)
    views = minidl.ensemble.ten_crop(x, 32)
    assert views.shape == (10, 6, 1, 32, 32)
    mine = ensembling.view_probabilities(member, views).mean(0)      # (6, 10)
    np.testing.assert_allclose(mine, probs.numpy(), rtol=1e-5, atol=1e-6)
