"""minidl.optim against closed forms and an independent float64 reference loop."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minidl
from minidl import optim


def param(values):
    return minidl.Tensor(np.array(values, dtype=np.float64), requires_grad=True)


def run(opt, params, grads):
    """Feed the gradient sequence grads[t][i] to the optimizer, one step each."""
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = minidl.Tensor(np.array(g, dtype=p.dtype))
        opt.step()


# ----------------------------------------------------------------------------
# closed forms with a constant gradient g
# ----------------------------------------------------------------------------
def test_sgd_plain_is_w0_minus_lr_sum_of_grads():
    rng = np.random.default_rng(0)
    w0, grads = rng.normal(size=(2, 3)), rng.normal(size=(5, 2, 3))
    p = param(w0)
    run(optim.SGD([p], lr=0.1), [p], grads[:, None])
    np.testing.assert_allclose(p.data, w0 - 0.1 * grads.sum(0), rtol=1e-13)


@pytest.mark.parametrize("mu,damp,nesterov", [(0.9, 0.0, False), (0.5, 0.3, False),
                                              (0.9, 0.0, True)])
def test_sgd_momentum_constant_grad_closed_form(mu, damp, nesterov):
    # b_1 = g;  b_t = mu^(t-1) g + (1 - d) g (1 - mu^(t-1)) / (1 - mu)
    g, lr, steps = np.array([1.5, -2.0]), 0.05, 6
    p = param([0.0, 0.0])
    run(optim.SGD([p], lr=lr, momentum=mu, dampening=damp, nesterov=nesterov),
        [p], [[g]] * steps)
    total = 0.0
    for t in range(1, steps + 1):
        b = mu ** (t - 1) + (1 - damp) * (1 - mu ** (t - 1)) / (1 - mu)
        total += 1 + mu * b if nesterov else b
    np.testing.assert_allclose(p.data, -lr * total * g, rtol=1e-12)


def test_sgd_first_step_uses_whole_gradient_despite_dampening():
    p = param([1.0])
    run(optim.SGD([p], lr=1.0, momentum=0.9, dampening=0.5), [p], [[[2.0]]])
    assert p.data[0] == pytest.approx(-1.0)      # not 1 - 0.5 * 2


def test_adam_constant_grad_bias_correction_closed_form():
    # m_t = (1 - b1^t) g and v_t = (1 - b2^t) g^2, so after bias correction
    # every step moves by exactly lr * g / (|g| + eps)
    g, lr, eps, steps = np.array([0.3, -4.0, 1e-3]), 0.01, 1e-8, 7
    p = param(np.zeros(3))
    run(optim.Adam([p], lr=lr, eps=eps), [p], [[g]] * steps)
    np.testing.assert_allclose(p.data, -steps * lr * g / (np.abs(g) + eps), rtol=1e-10)


def test_sgd_weight_decay_alone_is_geometric_decay():
    # zero loss gradient: w_t = (1 - lr wd)^t w_0
    p = param([2.0, -1.0])
    run(optim.SGD([p], lr=0.1, weight_decay=0.5), [p], [[[0.0, 0.0]]] * 4)
    np.testing.assert_allclose(p.data, 0.95 ** 4 * np.array([2.0, -1.0]), rtol=1e-13)


# ----------------------------------------------------------------------------
# random gradient sequences against a scalar float64 reference loop
# ----------------------------------------------------------------------------
def sgd_reference(w, grads, lr, mu, damp, wd, nesterov):
    w, buf = w.copy(), None
    for g in grads:
        g = g + wd * w
        if mu:
            buf = g.copy() if buf is None else mu * buf + (1 - damp) * g
            g = g + mu * buf if nesterov else buf
        w = w - lr * g
    return w


def adam_reference(w, grads, lr, b1, b2, eps, wd):
    w, m, v = w.copy(), np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = g + wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return w


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       steps=st.integers(1, 6), mu=st.sampled_from([0.0, 0.5, 0.9]),
       damp=st.sampled_from([0.0, 0.2]), nesterov=st.booleans(),
       wd=st.sampled_from([0.0, 1e-2]), seed=st.integers(0, 10**6))
def test_sgd_matches_reference(shape, steps, mu, damp, nesterov, wd, seed):
    nesterov = nesterov and mu > 0
    damp = 0.0 if nesterov else damp
    rng = np.random.default_rng(seed)
    w0, grads = rng.normal(size=shape), rng.normal(size=(steps, *shape))
    p = param(w0)
    run(optim.SGD([p], lr=0.1, momentum=mu, dampening=damp, weight_decay=wd,
                  nesterov=nesterov), [p], grads[:, None])
    np.testing.assert_allclose(p.data, sgd_reference(w0, grads, 0.1, mu, damp, wd, nesterov),
                               rtol=1e-12, atol=1e-14)


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       steps=st.integers(1, 6), betas=st.sampled_from([(0.9, 0.999), (0.5, 0.9)]),
       wd=st.sampled_from([0.0, 1e-2]), seed=st.integers(0, 10**6))
def test_adam_matches_reference(shape, steps, betas, wd, seed):
    rng = np.random.default_rng(seed)
    w0, grads = rng.normal(size=shape), rng.normal(size=(steps, *shape))
    p = param(w0)
    run(optim.Adam([p], lr=0.01, betas=betas, eps=1e-6, weight_decay=wd), [p], grads[:, None])
    np.testing.assert_allclose(p.data, adam_reference(w0, grads, 0.01, *betas, 1e-6, wd),
                               rtol=1e-12, atol=1e-14)


@settings(max_examples=40, deadline=None)
@given(size=st.sampled_from([1, 7, 100, 70_001]), steps=st.integers(1, 3),
       mu=st.sampled_from([0.0, 0.9]), damp=st.sampled_from([0.0, 0.3]),
       nesterov=st.booleans(), wd=st.sampled_from([0.0, 1e-2]),
       dtype=st.sampled_from([np.float32, np.float64]), transposed=st.booleans(),
       seed=st.integers(0, 10**6))
def test_fused_sgd_equals_the_array_expressions(size, steps, mu, damp, nesterov, wd, dtype,
                                                transposed, seed):
    """The Numba sweep (CPU) and the array expressions (the CuPy path) give the
    same bits, in float32 and float64, with a gradient that is not
    C-contiguous too."""
    nesterov = nesterov and mu > 0
    damp = 0.0 if nesterov else damp
    group = dict(lr=0.1, momentum=mu, dampening=damp, weight_decay=wd, nesterov=nesterov)
    rng = np.random.default_rng(seed)
    w_fused = rng.normal(size=(size, 2)).astype(dtype)
    w_arrays, state_fused, state_arrays = w_fused.copy(), {}, {}
    for _ in range(steps):
        g = rng.normal(size=(2, size)).astype(dtype).T if transposed else \
            rng.normal(size=(size, 2)).astype(dtype)
        optim._sgd_fused(w_fused, g, state_fused, group)
        optim._sgd_arrays(w_arrays, g, state_arrays, group)
        np.testing.assert_array_equal(w_fused, w_arrays)
    assert state_fused.keys() == state_arrays.keys()
    if mu:
        np.testing.assert_array_equal(state_fused["momentum_buffer"],
                                      state_arrays["momentum_buffer"])


def test_sgd_float16_and_non_contiguous_params_take_the_array_path():
    """Only C-contiguous float32/float64 NumPy parameters go to the Numba sweep;
    the others still get the same update from the array expressions."""
    half = minidl.Tensor(np.ones(3, np.float16), requires_grad=True)
    strided = minidl.Tensor(np.ones((3, 4))[:, ::2], requires_grad=True)
    assert not strided.data.flags.c_contiguous
    run(optim.SGD([half, strided], lr=0.5, momentum=0.9), [half, strided],
        [[np.ones(3), np.ones((3, 2))]] * 2)
    # b_1 = 1, b_2 = 0.9 + 1: w = 1 - 0.5 (1 + 1.9) = -0.45
    np.testing.assert_allclose(half.data, -0.45, rtol=1e-3)
    np.testing.assert_allclose(strided.data, -0.45, rtol=1e-13)
    assert half.dtype == np.float16


@pytest.mark.parametrize("mu", [0.0, 0.9])
@pytest.mark.parametrize("shape", [(), (0, 3)])
def test_sgd_scalar_and_empty_params(shape, mu):
    p = minidl.Tensor(np.full(shape, 2.0, np.float32), requires_grad=True)
    run(optim.SGD([p], lr=0.5, momentum=mu), [p], [[np.ones(shape)]] * 2)
    # b_1 = 1, b_2 = mu + 1: w = 2 - 0.5 (1 + (mu + 1))  (mu = 0: 2 - 0.5 * 2)
    np.testing.assert_allclose(p.data, np.full(shape, 2 - 0.5 * (2 + mu)), rtol=1e-6)
    assert p.shape == shape


def test_sgd_fused_sweep_keeps_inf_out_of_weight_decay():
    """wd = 0 adds nothing (not 0 * inf = nan) to the gradient of an inf weight."""
    p = minidl.Tensor(np.array([np.inf, 1.0]), requires_grad=True)
    run(optim.SGD([p], lr=0.1, momentum=0.9), [p], [[[1.0, 1.0]]])
    assert p.data[0] == np.inf and p.data[1] == pytest.approx(0.9)


def test_float32_params_stay_float32_and_are_updated_in_place():
    p = minidl.Tensor(np.ones((2, 2), np.float32), requires_grad=True)
    data = p.data
    run(optim.Adam([p], lr=0.1), [p], [[np.ones((2, 2))]] * 2)
    assert p.data is data and p.data.dtype == np.float32
    np.testing.assert_allclose(p.data, 1 - 2 * 0.1, rtol=1e-6)


# ----------------------------------------------------------------------------
# grads, groups, errors
# ----------------------------------------------------------------------------
def test_param_without_grad_is_skipped_and_zero_grad_clears():
    a, b = param([1.0]), param([2.0])
    opt = optim.SGD([a, b], lr=0.5, momentum=0.9)
    a.grad = minidl.Tensor(np.array([1.0]))
    opt.step()
    assert a.data[0] == 0.5 and b.data[0] == 2.0
    assert "state.1.momentum_buffer" not in opt.state_dict()
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_param_groups_use_their_own_options():
    a, b = param([0.0]), param([0.0])
    opt = optim.SGD([{"params": [a], "lr": 1.0}, {"params": b}], lr=0.1)
    run(opt, [a, b], [[[1.0], [1.0]]])
    assert a.data[0] == -1.0 and b.data[0] == pytest.approx(-0.1)


def test_accepts_a_generator_of_parameters():
    ps = [param([1.0]), param([2.0])]
    assert len(optim.Adam(p for p in ps).params()) == 2


@pytest.mark.parametrize("make,match", [
    (lambda p: optim.SGD([], lr=0.1), "empty"),
    (lambda p: optim.SGD(p, lr=0.1), "iterable"),
    (lambda p: optim.SGD([p, p], lr=0.1), "more than once"),
    (lambda p: optim.SGD([np.ones(2)], lr=0.1), "Tensors"),
    (lambda p: optim.SGD([p], lr=-1), "lr"),
    (lambda p: optim.SGD([p], lr=0.1, nesterov=True), "nesterov"),
    (lambda p: optim.SGD([{"params": [p], "betas": 1}], lr=0.1), "unknown option"),
    (lambda p: optim.Adam([p], betas=(0.9, 1.0)), "betas"),
    (lambda p: optim.StepLR(object(), 3), "optimizer"),
])
def test_bad_arguments_raise(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make(param([1.0, 2.0]))


def test_grad_of_wrong_shape_raises():
    p = param([1.0, 2.0])
    p.grad = minidl.Tensor(np.ones(3))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        optim.SGD([p], lr=0.1).step()


# ----------------------------------------------------------------------------
# state_dict: resume exactly, through an .npz file
# ----------------------------------------------------------------------------
def npz_roundtrip(state, tmp_path):
    np.savez(tmp_path / "opt.npz", **state)
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as f:
        return dict(f)


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.05}], lr=0.1,
                         momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda ps: optim.Adam([{"params": ps[:1]}, {"params": ps[1:], "betas": (0.5, 0.9)}],
                          lr=0.01, weight_decay=1e-3),
])
def test_restored_optimizer_continues_exactly(make, tmp_path):
    rng = np.random.default_rng(1)
    grads = [[rng.normal(size=(2, 3)), rng.normal(size=4)] for _ in range(6)]
    ps = [param(rng.normal(size=(2, 3))), param(rng.normal(size=4))]
    opt = make(ps)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    for g in grads[:3]:
        run(opt, ps, [g])
        sched.step()
    state = opt.state_dict()
    for value in state.values():
        assert isinstance(value, (np.ndarray, int, float, bool))
    saved = npz_roundtrip(state, tmp_path)
    saved_sched = npz_roundtrip(sched.state_dict(), tmp_path)

    ps2 = [param(p.data.copy()) for p in ps]
    opt2 = make(ps2)
    sched2 = optim.StepLR(opt2, step_size=2, gamma=0.5)
    opt2.load_state_dict(saved)
    sched2.load_state_dict(saved_sched)
    assert sched2.get_last_lr() == sched.get_last_lr()
    for g in grads[3:]:
        for o, s, qs in ((opt, sched, ps), (opt2, sched2, ps2)):
            run(o, qs, [g])
            s.step()
    for p, q in zip(ps, ps2):
        np.testing.assert_array_equal(p.data, q.data)


def test_load_state_dict_checks_and_leaves_optimizer_unchanged_on_error():
    p = param(np.zeros((2, 2)))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    run(opt, [p], [[np.ones((2, 2))]])
    good = opt.state_dict()
    bad = dict(good, **{"state.0.momentum_buffer": np.ones(3)})
    bad["param_groups.0.lr"] = 7.0
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        opt.load_state_dict(bad)
    assert opt.param_groups[0]["lr"] == 0.1
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([p]).load_state_dict(good)
    with pytest.raises(ValueError, match="more parameter groups"):
        optim.SGD([p], lr=0.1).load_state_dict(
            dict(good, **{"param_groups.1.num_params": 1}))
    with pytest.raises(ValueError, match="holds 1 parameters"):
        optim.SGD([p, param([1.0])], lr=0.1).load_state_dict(good)


# ----------------------------------------------------------------------------
# schedulers
# ----------------------------------------------------------------------------
def lrs(scheduler, epochs):
    out = [scheduler.get_last_lr()[0]]
    for _ in range(epochs - 1):
        scheduler.step()
        out.append(scheduler.get_last_lr()[0])
    return out


def test_step_lr_sequence():
    opt = optim.SGD([param([1.0])], lr=1.0)
    got = lrs(optim.StepLR(opt, step_size=3, gamma=0.5), 8)
    assert got == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25])
    assert opt.param_groups[0]["lr"] == got[-1]


def test_multistep_lr_sequence():
    opt = optim.SGD([param([1.0])], lr=0.1)
    got = lrs(optim.MultiStepLR(opt, milestones=[4, 2], gamma=0.1), 6)
    assert got == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_cosine_annealing_sequence():
    base, eta_min, T = 0.1, 0.001, 8
    opt = optim.SGD([param([1.0])], lr=base)
    got = lrs(optim.CosineAnnealingLR(opt, T_max=T, eta_min=eta_min), 2 * T + 1)
    assert got[0] == pytest.approx(base) and got[T] == pytest.approx(eta_min)
    assert got[T // 2] == pytest.approx((base + eta_min) / 2)
    assert got[2 * T] == pytest.approx(base)          # the cosine goes on
    expected = [eta_min + (base - eta_min) * (1 + math.cos(math.pi * e / T)) / 2
                for e in range(2 * T + 1)]
    assert got == pytest.approx(expected)


def test_scheduler_applies_to_every_group():
    opt = optim.SGD([{"params": [param([1.0])], "lr": 1.0}, {"params": [param([1.0])]}],
                    lr=0.1)
    sched = optim.StepLR(opt, step_size=1, gamma=0.5)
    sched.step()
    assert sched.get_last_lr() == pytest.approx([0.5, 0.05])


# ----------------------------------------------------------------------------
# it learns
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("make,steps", [
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), 200),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True), 200),
    (lambda ps: optim.Adam(ps, lr=0.05), 400),
])
def test_converges_on_least_squares(make, steps):
    rng = np.random.default_rng(0)
    A, b = rng.normal(size=(40, 3)), rng.normal(size=(40, 1))
    w_star = np.linalg.lstsq(A, b, rcond=None)[0]
    w = minidl.Tensor(np.zeros((3, 1)), requires_grad=True)
    opt = make([w])
    At, bt = minidl.Tensor(A), minidl.Tensor(b)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((At @ w - bt) ** 2).mean()
        loss.backward()
        opt.step()
    np.testing.assert_allclose(w.data, w_star, atol=1e-4)


@pytest.mark.skipif(not minidl.cuda_is_available(), reason="needs a CUDA GPU")
def test_cupy_params_update_on_the_gpu():
    import cupy as cp
    p = minidl.Tensor(cp.zeros(3, dtype=cp.float32), requires_grad=True)
    opt = optim.Adam([p], lr=0.1)
    p.grad = minidl.Tensor(cp.ones(3, dtype=cp.float32))
    opt.step()
    assert isinstance(p.data, cp.ndarray)
    np.testing.assert_allclose(p.data.get(), -0.1, rtol=1e-5)
    state = opt.state_dict()
    assert isinstance(state["state.0.exp_avg"], np.ndarray)
    opt.load_state_dict(state)
    assert isinstance(opt.state[id(p)]["exp_avg"], cp.ndarray)
