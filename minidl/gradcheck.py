"""Numerical gradient checking: is backward() the derivative of forward()?

For a function f of tensors x_1..x_k with any output, gradcheck compares the
autograd gradient with central differences

    df/dx_j ~ (f(x + eps e_j) - f(x - eps e_j)) / (2 eps)

in float64 whatever the inputs' dtype (float32 differences would drown in
rounding). A non-scalar output is reduced to a scalar by a fixed random
projection, L = sum(out * r), so every output element is checked at once.

Two modes:
* ``elementwise`` perturbs each element of each input: 2 evaluations per
  element, exact and slow; the default for inputs of up to 4,096 elements.
* ``directional`` (Chainer's check_backward) perturbs all inputs at once along
  one random direction d whose components are all at least 0.5 in size, so
  no element escapes the check: numeric (L(x + eps d) - L(x - eps d)) / 2eps
  must equal the analytic sum_j dL/dx_j d_j. Two evaluations, any size.
"""
import numpy as np

from . import backend
from .tensor import Tensor

ELEMENTWISE_LIMIT = 4096


class GradcheckError(AssertionError):
    """The analytic gradient disagrees with the numerical one."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, mode="auto", seed=0):
    """Check the gradients of ``fn(*inputs)`` w.r.t. every input requiring grad.

    Returns True, or raises GradcheckError naming the input index, the worst
    element, the analytic and numeric values and the tolerance.
    """
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    xs = [_as_float64(x) for x in inputs]
    checked = [i for i, x in enumerate(xs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad; nothing to check")
    rng = np.random.default_rng(seed)
    projections = _projections(fn, xs, rng)

    def loss_value(arrays):
        trial = list(xs)
        for i, a in zip(checked, arrays):
            trial[i] = Tensor(a)
        return float(_project(fn(*trial), projections).item())

    analytic = _analytic(fn, xs, checked, projections)
    base = [xs[i].data for i in checked]
    n_elements = sum(a.size for a in base)
    if mode == "auto":
        mode = "elementwise" if n_elements <= ELEMENTWISE_LIMIT else "directional"
    if mode == "elementwise":
        _check_elementwise(loss_value, base, analytic, checked, eps, atol, rtol)
    elif mode == "directional":
        _check_directional(loss_value, base, analytic, checked, eps, atol, rtol, rng)
    else:
        raise ValueError(f"gradcheck: mode must be 'auto', 'elementwise' or "
                         f"'directional', got {mode!r}")
    return True


def _as_float64(x):
    if isinstance(x, Tensor) and x.dtype.kind == "f":
        return Tensor(x.data.astype(np.float64), requires_grad=x.requires_grad)
    return x


def _outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _projections(fn, xs, rng):
    """One fixed random weight array per output element (float64)."""
    from .tensor import no_grad
    with no_grad():
        outs = _outputs(fn(*xs))
    return [backend.to_device(rng.standard_normal(o.shape), o.device) for o in outs]


def _project(out, projections):
    total = None
    for o, r in zip(_outputs(out), projections):
        term = (o * Tensor(r)).sum()
        total = term if total is None else total + term
    return total


def _analytic(fn, xs, checked, projections):
    for i in checked:
        xs[i].grad = None
    _project(fn(*xs), projections).backward()
    grads = []
    for i in checked:
        g = xs[i].grad
        grads.append(np.zeros(xs[i].shape) if g is None else backend.as_numpy(g.data))
    return grads


def _check_elementwise(loss_value, base, analytic, checked, eps, atol, rtol):
    for k, (a, ga) in enumerate(zip(base, analytic)):
        numeric = np.zeros(a.shape)
        flat = a.reshape(-1)                     # a view: perturb in place
        for j in range(flat.size):
            old = flat[j].item()
            flat[j] = old + eps
            plus = loss_value(base)
            flat[j] = old - eps
            minus = loss_value(base)
            flat[j] = old
            numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
        err = np.abs(ga - numeric) - (atol + rtol * np.abs(numeric))
        if err.size and err.max() > 0:
            worst = np.unravel_index(int(err.argmax()), err.shape)
            tol = atol + rtol * abs(numeric[worst])
            raise GradcheckError(
                f"gradcheck failed for input {checked[k]} (shape {a.shape}) at element "
                f"{tuple(int(w) for w in worst)}: analytic {ga[worst]:.8g}, numeric "
                f"{numeric[worst]:.8g}, |difference| {abs(ga[worst] - numeric[worst]):.3g} "
                f"> tolerance {tol:.3g} (atol={atol}, rtol={rtol})")


def _check_directional(loss_value, base, analytic, checked, eps, atol, rtol, rng):
    directions = []
    for a in base:
        d = rng.uniform(0.5, 1.0, a.shape) * rng.choice([-1.0, 1.0], a.shape)
        directions.append(d)
    norm = np.sqrt(sum((d * d).sum() for d in directions))
    directions = [d / norm for d in directions]
    plus = [a + backend.to_device(d, backend.device_of(a)) * eps for a, d in zip(base, directions)]
    minus = [a - backend.to_device(d, backend.device_of(a)) * eps for a, d in zip(base, directions)]
    numeric = (loss_value(plus) - loss_value(minus)) / (2 * eps)
    analytic_dir = sum(float((g * d).sum()) for g, d in zip(analytic, directions))
    tol = atol + rtol * abs(numeric)
    if abs(analytic_dir - numeric) > tol:
        # name the input whose own directional derivative is furthest off
        per_input = [float((g * d).sum()) for g, d in zip(analytic, directions)]
        worst = int(np.argmax(np.abs(per_input)))
        raise GradcheckError(
            f"gradcheck (directional) failed: along a random direction over inputs "
            f"{checked}, analytic {analytic_dir:.8g} vs numeric {numeric:.8g}, "
            f"|difference| {abs(analytic_dir - numeric):.3g} > tolerance {tol:.3g}; "
            f"largest contribution from input {checked[worst]} (shape {base[worst].shape}); "
            f"rerun with mode='elementwise' on a smaller size to find the element")
