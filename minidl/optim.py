"""Optimizers (SGD, Adam) and learning-rate schedulers, with PyTorch's rules.

An optimizer holds a list of *parameter groups*: dicts with a ``"params"``
list of Tensors and the hyperparameters of that group (``lr``, ...). Pass
an iterable of Tensors for one group, or a list of dicts for several (a
key missing from a dict takes the constructor's value)::

    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt = SGD([{"params": convs, "lr": 0.01}, {"params": heads}], lr=0.1)

``step()`` updates ``p.data`` in place (NumPy or CuPy: only ``xp`` array
ops are used) for every parameter whose ``.grad`` is not None;
``zero_grad()`` sets every ``.grad`` to None.

``state_dict()`` is a FLAT dict ``str -> NumPy array or Python number``, so
``minidl.save`` can write it to an ``.npz`` with no pickle::

    "param_groups.{g}.{name}"   hyperparameter ``name`` of group g
                                ("lr", "momentum", ...; a tuple such as
                                Adam's "betas" is stored as a 1-D array)
    "param_groups.{g}.num_params"   how many parameters group g holds
    "state.{i}.{name}"          per-parameter state of parameter i, counted
                                across groups in order ("momentum_buffer";
                                "step", "exp_avg", "exp_avg_sq")

``load_state_dict(d)`` checks that the groups, parameter counts and array
shapes match, and copies the state to the device of each parameter.

Schedulers change ``group["lr"]`` of every group; call ``scheduler.step()``
once per epoch, after ``optimizer.step()``.
"""
import bisect
import math

import numpy as np

from . import backend
from .jit import njit
from .tensor import Tensor, no_grad


# ----------------------------------------------------------------------------
# the base class: parameter groups, zero_grad, state_dict
# ----------------------------------------------------------------------------
class Optimizer:
    """Base class: subclasses set ``defaults`` and write ``_update``."""

    state_names = ()   # names of the per-parameter state arrays/numbers

    def __init__(self, params, defaults):
        self.defaults = defaults
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of "
                            f"Tensors (e.g. model.parameters()), got a single Tensor")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups = []
        self.state = {}    # id(param) -> dict of state arrays/numbers
        seen = set()
        for group in groups:
            group = self._make_group(group)
            for p in group["params"]:
                if id(p) in seen:
                    raise ValueError(f"{type(self).__name__}: a parameter of shape "
                                     f"{p.shape} appears more than once")
                seen.add(id(p))
            self.param_groups.append(group)

    def _make_group(self, group):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{type(self).__name__}: a parameter group must be a dict "
                            f"with a 'params' key, got {type(group).__name__}")
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown option(s) {sorted(unknown)} "
                             f"in a parameter group; known: {sorted(self.defaults)}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: parameters must be Tensors, "
                                f"got {type(p).__name__}")
            if p.dtype.kind != "f":
                raise TypeError(f"{type(self).__name__}: parameters must be floating "
                                f"point, got a {p.dtype} tensor of shape {p.shape}")
        return {**self.defaults, **group, "params": params}

    def params(self):
        """Every parameter, group after group: its index is its state key."""
        return [p for group in self.param_groups for p in group["params"]]

    def zero_grad(self):
        """Clear the gradients (``p.grad = None``), as PyTorch does by default."""
        for p in self.params():
            p.grad = None

    def step(self):
        """Apply one update to every parameter that has a gradient."""
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    g = p.grad.data
                    if g.shape != p.shape:
                        raise ValueError(f"{type(self).__name__}.step: grad of shape "
                                         f"{g.shape} for a parameter of shape {p.shape}")
                    self._update(p.data, g, self.state.setdefault(id(p), {}), group)

    def _update(self, w, g, state, group):
        """Update ``w`` (the parameter's array) in place from its gradient ``g``;
        ``state`` is this parameter's own dict, ``group`` its options."""
        raise NotImplementedError

    # --- checkpointing ---------------------------------------------------------
    def state_dict(self):
        """A flat dict of NumPy arrays and numbers (layout in the module docstring)."""
        out = {}
        for gi, group in enumerate(self.param_groups):
            for name in self.defaults:
                value = group[name]
                out[f"param_groups.{gi}.{name}"] = (np.asarray(value, dtype=np.float64)
                                                    if isinstance(value, tuple) else value)
            out[f"param_groups.{gi}.num_params"] = len(group["params"])
        for pi, p in enumerate(self.params()):
            for name, value in self.state.get(id(p), {}).items():
                out[f"state.{pi}.{name}"] = (backend.as_numpy(value).copy()
                                             if hasattr(value, "shape") else value)
        return out

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and state saved by ``state_dict()``.

        Everything is checked before anything changes: on an error the
        optimizer is left as it was.
        """
        name = type(self).__name__
        d = dict(state_dict)
        if f"param_groups.{len(self.param_groups)}.num_params" in d:
            raise ValueError(f"{name}.load_state_dict: the state dict has more parameter "
                             f"groups than the optimizer ({len(self.param_groups)})")
        hyper = []                     # the new hyperparameters of each group
        for gi, group in enumerate(self.param_groups):
            for key in [f"param_groups.{gi}.{h}" for h in ("num_params", *self.defaults)]:
                if key not in d:
                    raise ValueError(f"{name}.load_state_dict: missing {key!r} (fewer "
                                     f"groups, or saved by another optimizer type?)")
            count = int(d[f"param_groups.{gi}.num_params"])
            if count != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: group {gi} holds {count} "
                                 f"parameters in the state dict, {len(group['params'])} here")
            hyper.append({h: _like(default, d[f"param_groups.{gi}.{h}"])
                          for h, default in self.defaults.items()})
        state = {}
        for pi, p in enumerate(self.params()):
            entry = {}
            for sname in self.state_names:
                key = f"state.{pi}.{sname}"
                if key not in d:
                    continue
                if sname == "step":
                    entry[sname] = int(d[key])
                    continue
                value = np.asarray(backend.as_numpy(d[key]))
                if value.shape != p.shape:
                    raise ValueError(f"{name}.load_state_dict: {key} has shape "
                                     f"{value.shape}, the parameter has shape {p.shape}")
                entry[sname] = backend.to_device(value.astype(p.dtype), p.device)
            if entry:
                state[id(p)] = entry
        for group, h in zip(self.param_groups, hyper):
            group.update(h)
        self.state = state


def _like(default, value):
    """A saved hyperparameter back in the Python type of its default."""
    if isinstance(default, tuple):
        return tuple(float(v) for v in np.asarray(value))
    if isinstance(default, bool):
        return bool(value)
    return float(value)


def _check_nonnegative(opt, **values):
    for key, value in values.items():
        if not value >= 0:
            raise ValueError(f"{opt}: {key} must be >= 0, got {value}")


# ----------------------------------------------------------------------------
# SGD
# ----------------------------------------------------------------------------
class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

    With g = grad + weight_decay * w (L2 weight decay), momentum mu,
    dampening d::

        b_1 = g_1                        (the buffer starts at the first grad)
        b_t = mu * b_{t-1} + (1 - d) * g_t
        u_t = g_t + mu * b_t   if nesterov  else  b_t      (u_t = g_t if mu == 0)
        w  <- w - lr * u_t

    Note: this is PyTorch's form (lr multiplies the buffer at each step), not
    Sutskever's v = mu * v - lr * g; they agree while lr is constant.

    On the CPU the update is one Numba sweep (``sgd_update``); CuPy arrays
    take the array expressions (``_sgd_arrays``). Both give the same bits.
    """

    state_names = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        _check_nonnegative("SGD", lr=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"SGD: nesterov=True needs momentum > 0 and dampening = 0, "
                             f"got momentum={momentum}, dampening={dampening}")
        super().__init__(params, dict(lr=float(lr), momentum=float(momentum),
                                      dampening=float(dampening),
                                      weight_decay=float(weight_decay),
                                      nesterov=bool(nesterov)))

    def _update(self, w, g, state, group):
        fused = (backend.get_array_module(w) is np and w.flags.c_contiguous
                 and w.flags.writeable and w.dtype in (np.float32, np.float64)
                 and g.dtype == w.dtype)
        (_sgd_fused if fused else _sgd_arrays)(w, g, state, group)


def _sgd_arrays(w, g, state, group):
    """SGD's update as array expressions (NumPy or CuPy): 5-7 sweeps."""
    mu, wd = group["momentum"], group["weight_decay"]
    if wd != 0:
        g = g + wd * w
    if mu != 0:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = g.copy()
        else:
            buf *= mu
            buf += (1 - group["dampening"]) * g
        g = g + mu * buf if group["nesterov"] else buf
    w -= group["lr"] * g


def _sgd_fused(w, g, state, group):
    """The same update as one Numba sweep (C-contiguous NumPy float32/64 w, g of w's dtype)."""
    mu = group["momentum"]
    first = mu != 0 and "momentum_buffer" not in state
    if first:
        state["momentum_buffer"] = np.empty_like(w)
    flat = w.reshape(-1)                                      # a view: w is C-contiguous
    buf = state["momentum_buffer"].reshape(-1) if mu != 0 else flat[:0]   # unused if mu == 0
    scalar = w.dtype.type                  # computed in w's precision, as NumPy does
    sgd_update(flat, np.ascontiguousarray(g).reshape(-1), buf,
               scalar(group["lr"]), scalar(mu), scalar(1 - group["dampening"]),
               scalar(group["weight_decay"]), group["nesterov"], first)


@njit
def sgd_update(w, g, buf, lr, mu, undamped, wd, nesterov, first):
    """One SGD step on the flat arrays w, g, buf (buf unused if mu == 0), in place:

        d = g[i] + wd w[i]
        buf[i] = d (first step)   or   mu buf[i] + undamped d      (undamped = 1 - dampening)
        w[i] -= lr (d + mu buf[i] if nesterov else buf[i])   (mu != 0;  lr d if mu == 0)

    Each element is read and written once, where the array expressions read
    w, g and buf 5-7 times and make 3 temporaries: on 25.6 M float32
    parameters (ResNet-50's count) 67 ms for the expressions, 11 ms for this
    loop. It is memory-bound: on two threads (prange) it took the same 11 ms."""
    for i in range(w.size):
        d = g[i]
        if wd != 0:                        # skipped, not 0 * w: w may hold an inf
            d = d + wd * w[i]
        if mu != 0:
            b = d if first else mu * buf[i] + undamped * d
            buf[i] = b
            d = d + mu * b if nesterov else b
        w[i] -= lr * d


# ----------------------------------------------------------------------------
# Adam
# ----------------------------------------------------------------------------
class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), as ``torch.optim.Adam`` (amsgrad=False).

    With g = grad + weight_decay * w (L2, not AdamW's decoupled decay) and
    step count t = 1, 2, ...::

        m_t = beta1 * m_{t-1} + (1 - beta1) * g          (m_0 = 0)
        v_t = beta2 * v_{t-1} + (1 - beta2) * g**2       (v_0 = 0)
        w  <- w - lr / (1 - beta1**t) * m_t / (sqrt(v_t / (1 - beta2**t)) + eps)

    The factors 1 - beta**t undo the bias of m and v towards their zero start.
    """

    state_names = ("step", "exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        _check_nonnegative("Adam", lr=lr, eps=eps, weight_decay=weight_decay)
        betas = tuple(float(b) for b in betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam: betas must be two numbers in [0, 1), got {betas}")
        super().__init__(params, dict(lr=float(lr), betas=betas, eps=float(eps),
                                      weight_decay=float(weight_decay)))

    def _update(self, w, g, state, group):
        xp = backend.get_array_module(w)
        beta1, beta2 = group["betas"]
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * w
        if "step" not in state:
            state.update(step=0, exp_avg=xp.zeros_like(w), exp_avg_sq=xp.zeros_like(w))
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * g * g
        denom = xp.sqrt(v) / math.sqrt(1 - beta2 ** t) + group["eps"]
        w -= (group["lr"] / (1 - beta1 ** t)) * m / denom


# ----------------------------------------------------------------------------
# learning-rate schedulers
# ----------------------------------------------------------------------------
class LRScheduler:
    """Base class: sets ``lr = lr_at(base_lr, epoch)`` in every group.

    As in PyTorch, making the scheduler counts as epoch 0 (the lr becomes
    ``lr_at(base_lr, 0)``); each ``step()`` moves to the next epoch. The
    base lrs are the groups' lrs when the scheduler is made.
    """

    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: optimizer must be a minidl "
                            f"optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self.step()

    def lr_at(self, base_lr, epoch):
        raise NotImplementedError

    def step(self):
        """Advance one epoch and set each group's lr to its closed form."""
        self.last_epoch += 1
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(base, self.last_epoch)

    def get_last_lr(self):
        """The lr of each group set by the last ``step()`` (a list of floats)."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        """``{"last_epoch": int, "base_lrs": 1-D float64 array}``."""
        return {"last_epoch": self.last_epoch,
                "base_lrs": np.asarray(self.base_lrs, dtype=np.float64)}

    def load_state_dict(self, state_dict):
        """Restore the epoch counter and base lrs, and set the lrs they give."""
        base_lrs = np.asarray(state_dict["base_lrs"], dtype=np.float64).reshape(-1)
        if len(base_lrs) != len(self.optimizer.param_groups):
            raise ValueError(f"{type(self).__name__}.load_state_dict: {len(base_lrs)} "
                             f"base lrs for {len(self.optimizer.param_groups)} groups")
        self.base_lrs = [float(b) for b in base_lrs]
        self.last_epoch = int(state_dict["last_epoch"]) - 1
        self.step()


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        if int(step_size) != step_size or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive integer, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer)

    def lr_at(self, base_lr, epoch):
        return base_lr * self.gamma ** (epoch // self.step_size)


class MultiStepLR(LRScheduler):
    """lr = base_lr * gamma ** (number of milestones <= epoch)."""

    def __init__(self, optimizer, milestones, gamma=0.1):
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def lr_at(self, base_lr, epoch):
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, epoch)


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2.

    This is the closed form (SGDR without restarts); after T_max epochs the
    cosine goes on (the lr rises again), as in PyTorch.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0):
        if not T_max > 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be > 0, got {T_max}")
        self.T_max, self.eta_min = T_max, float(eta_min)
        super().__init__(optimizer)

    def lr_at(self, base_lr, epoch):
        cos = math.cos(math.pi * epoch / self.T_max)
        return self.eta_min + (base_lr - self.eta_min) * (1 + cos) / 2
