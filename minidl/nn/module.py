"""Module, Parameter and the containers Sequential and ModuleList.

A Module is a tree: its parameters, buffers and sub-modules are registered
when they are assigned as attributes (``self.fc = Linear(4, 2)``), and every
recursive method (``parameters``, ``state_dict``, ``train``, ``to``...) walks
that tree. Names are dotted paths through it, as in PyTorch and torchvision:
``features.0.weight`` is the ``weight`` of child ``0`` of child ``features``.

* parameters: Tensors the optimizer trains (``Parameter``, requires_grad=True);
* buffers: state that is saved but not trained (BatchNorm's running_mean);
* children: sub-modules.

When a layer deep inside a network raises ValueError/TypeError/RuntimeError,
the outermost ``__call__`` prefixes the message with the dotted name of that
layer, e.g. ``in AlexNet, layer classifier.1: Linear expected ...``.
"""
import threading
from collections import OrderedDict, namedtuple

import numpy as np

from ..backend import as_numpy, check_device, to_device
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that is a trainable weight of a Module (requires_grad=True)."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])

_calls = threading.local()        # how many Module calls are on the stack


class Module:
    """Base class of every layer and network: subclass it, build the layers in
    ``__init__`` (after ``super().__init__()``), compute in ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        self.training = True

    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} has no forward() method")

    # --- calling: forward, and naming the layer that failed --------------------
    def __call__(self, *args, **kwargs):
        """forward(*args); an error on its way out records this module, and the
        outermost call names the failing layer (see ``_name_failing_layer``)."""
        depth = getattr(_calls, "depth", 0)
        _calls.depth = depth + 1
        try:
            return self.forward(*args, **kwargs)
        except (ValueError, TypeError, RuntimeError) as e:
            trail = e.__dict__.setdefault("_minidl_modules", [])   # innermost first
            trail.append(self)
            if depth == 0:                                          # outermost call
                _name_failing_layer(e, trail)
            raise
        finally:
            _calls.depth = depth

    # --- registration by attribute assignment ---------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__ and isinstance(value, (Parameter, Module)):
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() runs: "
                                 f"call super().__init__() first in "
                                 f"{type(self).__name__}.__init__")
        params, buffers, modules = self.__dict__.get("_parameters"), \
            self.__dict__.get("_buffers"), self.__dict__.get("_modules")
        if isinstance(value, Parameter):
            self._forget(name)
            params[name] = value
        elif isinstance(value, Module):
            self._forget(name)
            modules[name] = value
        elif params is not None and name in params:
            self._check_none(name, value, "parameter", "Parameter")
            params[name] = None
        elif modules is not None and name in modules:
            self._check_none(name, value, "child module", "Module")
            modules[name] = None
        elif buffers is not None and name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r} "
                                f"(Tensor or None expected)")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _check_none(self, name, value, kind, expected):
        if value is not None:
            raise TypeError(f"cannot assign {type(value).__name__} as {kind} {name!r} "
                            f"({expected} or None expected)")

    def _forget(self, name):
        self.__dict__.pop(name, None)
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)

    def __getattr__(self, name):          # called only when normal lookup fails
        for table in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(table)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def _check_name(self, name, kind):
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"{kind} name must be a non-empty string without '.', got {name!r}")
        if hasattr(self, name) and name not in self._parameters and \
                name not in self._buffers and name not in self._modules:
            raise KeyError(f"attribute {name!r} already exists in {type(self).__name__}")

    def register_parameter(self, name, param):
        """Register ``param`` (a Parameter, or None for e.g. bias=False) as ``name``."""
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot register {type(param).__name__} as parameter {name!r} "
                            f"(Parameter or None expected)")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name, tensor):
        """Register ``tensor`` (saved in state_dict, not trained) as ``name``."""
        self._check_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot register {type(tensor).__name__} as buffer {name!r} "
                            f"(Tensor or None expected)")
        self._forget(name)
        self._buffers[name] = tensor

    def add_module(self, name, module):
        """Register ``module`` (or None) as the child ``name``."""
        self._check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module (child {name!r})")
        self._forget(name)
        self._modules[name] = module

    # --- walking the tree ----------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """(dotted name, module) for this module ("") and every descendant,
        each module once unless remove_duplicate=False."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, prefix + ("." if prefix else "") + name,
                                               remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        for _, child in self.named_children():
            yield child

    def _named_members(self, table, prefix, recurse, remove_duplicate):
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) \
            if recurse else [(prefix, self)]
        seen = set()
        for module_prefix, module in modules:
            for name, t in getattr(module, table).items():
                if t is None or (remove_duplicate and id(t) in seen):
                    continue
                seen.add(id(t))
                yield module_prefix + ("." if module_prefix else "") + name, t

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(dotted name, Parameter); a parameter shared by two layers comes once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """Call ``fn(module)`` on every child (recursively), then on self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # --- saving and loading ------------------------------------------------------
    def _state_items(self):
        """(dotted name, Tensor) of every parameter and buffer in PyTorch's order:
        module by module (depth first), its parameters, then its buffers."""
        for prefix, m in self.named_modules(remove_duplicate=False):
            for table in (m._parameters, m._buffers):
                for name, t in table.items():
                    if t is not None:
                        yield prefix + ("." if prefix else "") + name, t

    def state_dict(self):
        """{dotted name: NumPy array copy} of every parameter and buffer."""
        return OrderedDict((name, as_numpy(t.data).copy()) for name, t in self._state_items())

    def load_state_dict(self, state_dict, strict=True):
        """Copy the arrays of ``state_dict`` into the parameters and buffers.

        Values (NumPy arrays, CuPy arrays or Tensors) are cast to each target's
        dtype and moved to its device. Every problem is reported in one
        RuntimeError: missing keys and unexpected keys (only when ``strict``)
        and mismatched shapes or non-numeric values (always). Nothing is
        copied unless all is well.
        Returns IncompatibleKeys(missing_keys, unexpected_keys).
        """
        own = OrderedDict(self._state_items())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        values, mismatched = {}, []
        for k in own:
            if k in state_dict:
                values[k] = as_numpy(_array(state_dict[k]))         # (host copy of CuPy data)
                if values[k].shape != own[k].shape or values[k].dtype.kind not in "biuf":
                    mismatched.append(f"{k}: checkpoint {values[k].shape} "
                                      f"{values[k].dtype}, model {own[k].shape}")
        problems = []
        if strict and missing:
            problems.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if mismatched:
            problems.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched)}")
        if problems:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n  "
                               + "\n  ".join(problems))
        for k, value in values.items():
            t = own[k]
            t.data = to_device(value.astype(t.dtype, copy=True), t.device)
        return IncompatibleKeys(missing, unexpected)

    # --- modes, devices, dtypes ------------------------------------------------------
    def train(self, mode=True):
        """Training mode (BatchNorm uses batch statistics, Dropout drops) for
        this module and every descendant; ``train(False)`` is ``eval()``."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode): mode must be a bool, got {type(mode).__name__}")
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        """Evaluation mode: BatchNorm uses its running statistics, Dropout is the identity."""
        return self.train(False)

    def _apply_to_arrays(self, fn):
        """Replace the array of every parameter, buffer and gradient by fn(array),
        in place: the Parameter objects (held by optimizers) stay the same."""
        for t in list(self.parameters()) + list(self.buffers()):
            t.data = fn(t.data)
            if t.grad is not None:
                t.grad = Tensor(fn(t.grad.data))
        return self

    def to(self, device):
        """Move every parameter and buffer to ``device`` ("cpu" or "cuda"); returns self."""
        device = check_device(device)
        return self._apply_to_arrays(lambda a: to_device(a, device))

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def double(self):
        """Cast floating-point parameters and buffers to float64 (integer buffers stay)."""
        return self._apply_to_arrays(_float_caster(np.float64))

    def float(self):
        """Cast floating-point parameters and buffers to float32."""
        return self._apply_to_arrays(_float_caster(np.float32))

    def zero_grad(self):
        """Clear the gradient of every parameter (set it to None)."""
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, requires_grad=True):
        """Turn gradients of every parameter on or off (freeze layers to fine-tune)."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    # --- printing ----------------------------------------------------------------
    def extra_repr(self):
        """The settings shown between the parentheses of repr (override in layers)."""
        return ""

    def __repr__(self):
        lines = [f"({name}): " + _indent(repr(child)) for name, child in self._modules.items()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        body = "\n  ".join(([extra] if extra else []) + lines)
        return f"{type(self).__name__}(\n  {body}\n)"


def _indent(text):
    return text.replace("\n", "\n  ")


def _float_caster(dtype):
    """array -> array cast to ``dtype`` if floating point (int buffers stay int)."""
    return lambda a: a.astype(dtype, copy=False) if a.dtype.kind == "f" else a


def _array(value):
    return value.data if isinstance(value, Tensor) else value


def _name_failing_layer(error, trail):
    """Prefix the message of ``error`` with the dotted name of the layer that
    raised it. ``trail``: the modules it passed through, innermost first."""
    if len(trail) < 2 or len(error.args) != 1 or not isinstance(error.args[0], str):
        return
    parts = []
    for outer, inner in zip(trail[:0:-1], trail[-2::-1]):      # walk inwards
        name = next((n for n, m in outer.named_modules() if m is inner), None)
        if name is None:                                       # not registered
            parts.append(f"<{type(inner).__name__}>")
            break
        parts.append(name)
    layer, message = ".".join(parts), error.args[0]
    kind = type(trail[0]).__name__
    if not message.startswith(kind):               # e.g. an error from inside an op
        layer += f" ({kind})"
    error.args = (f"in {type(trail[-1]).__name__}, layer {layer}: {message}",)


# ----------------------------------------------------------------------------
# containers
# ----------------------------------------------------------------------------
class _ModuleSequence(Module):
    """What Sequential and ModuleList share: children "0", "1", ... that can be
    indexed, replaced (``model.classifier[6] = Linear(4096, 10)``), counted,
    iterated and appended to."""

    def _key(self, index):
        keys = list(self._modules)
        if not -len(keys) <= index < len(keys):
            raise IndexError(f"index {index} is out of range for a {type(self).__name__} "
                             f"of {len(keys)} modules")
        return keys[index]

    def __getitem__(self, index):
        return self._modules[self._key(index)]

    def __setitem__(self, index, module):
        self.add_module(self._key(index), module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self


class Sequential(_ModuleSequence):
    """Modules applied one after the other: forward(x) = m_k(...m_1(x)).

    ``Sequential(a, b, c)`` names the children "0", "1", "2" (torchvision's
    ``features.0.weight``); ``Sequential(OrderedDict(conv=a, relu=b))`` uses
    the given names. A slice gives a Sequential that keeps the names.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return super().__getitem__(index)

    def forward(self, x):
        for module in self:
            x = module(x)
        return x


class ModuleList(_ModuleSequence):
    """A list of modules, registered so that their parameters are found. It has
    no forward: the owner decides how to call them (e.g. a stack of blocks)."""

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(list(self._modules.values())[index])
        return super().__getitem__(index)

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self


def functional_call(module, parameters, *args):
    """``module(*args)`` with its parameters replaced by ``parameters`` (Tensors,
    in ``module.parameters()`` order), restored afterwards.

    This is how a whole network is gradient-checked: ``gradcheck`` perturbs
    the tensors it is given, so the parameters must be inputs of the function
    (``lambda x, *ps: functional_call(model, ps, x)``)."""
    slots = [(m, name) for m in module.modules()
             for name, p in m._parameters.items() if p is not None]
    parameters = list(parameters)
    if len(parameters) != len(slots):
        raise ValueError(f"functional_call: {type(module).__name__} has {len(slots)} "
                         f"parameters, got {len(parameters)} tensors")
    saved = [m._parameters[name] for m, name in slots]
    for (m, name), p in zip(slots, parameters):
        m._parameters[name] = p
    try:
        return module(*args)
    finally:
        for (m, name), p in zip(slots, saved):
            m._parameters[name] = p
