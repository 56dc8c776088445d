"""minidl: a deep-learning framework from scratch on NumPy and CuPy.

This file is the table of contents: every public name of ../shared/API.md.
"""
from .memory import keep_freed_memory
keep_freed_memory()                 # glibc: reuse freed arrays' pages (see memory.py)

from .tensor import Tensor, tensor, no_grad, enable_grad, is_grad_enabled, manual_seed
from .creation import zeros, ones, randn, rand, arange, zeros_like, ones_like
from .ops.math import cat, stack
from .gradcheck import gradcheck, GradcheckError
from .backend import cuda_is_available

__version__ = "0.1.0"
from . import nn
from .io import save, load
from . import optim, data
from . import models
from .summary import summary
