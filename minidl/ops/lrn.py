"""Placeholder: LRN is being written (issue 3)."""


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=2.0):
    raise NotImplementedError
