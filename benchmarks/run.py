"""The benchmark suite, same as ``minidl bench``: ``python benchmarks/run.py --help``.

OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are removed here, before anything
imports NumPy (they make OpenBLAS use another CPU's kernel); the cases run in
child processes that inherit the cleaned environment.
"""
import os
import sys

for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_name, None)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from minidl.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="python benchmarks/run.py"))
