"""The differentiable operations, one module per family (see each docstring)."""
