"""Numba's compiled kernels are cached outside the package, so caching works
when minidl is installed read-only in site-packages."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cache_goes_to_the_user_cache_dir_not_the_package(tmp_path):
    site = tmp_path / "site"
    shutil.copytree(os.path.join(ROOT, "minidl"), site / "minidl",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(os.path.join(ROOT, "kernels"), site / "minidl" / "kernels",
                    ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "MINIDL_"))}
    env.update(HOME=str(home), PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1")
    code = ("import numpy as np, minidl, minidl.nn.functional as F;"
            "x = minidl.Tensor(np.ones((1, 2, 5, 5), np.float32), requires_grad=True);"
            "F.conv2d(x, minidl.Tensor(np.ones((3, 2, 3, 3), np.float32))).sum().backward();"
            "import numba; print(numba.config.CACHE_DIR)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=str(tmp_path), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    cache = home / ".cache" / "minidl" / "numba"
    assert out.stdout.strip() == str(cache)
    cached = [f for _, _, files in os.walk(cache) for f in files if f.endswith((".nbi", ".nbc"))]
    assert cached, "no Numba cache files were written to the user cache dir"
    in_package = [f for _, _, files in os.walk(site) for f in files if f.endswith(".nbi")]
    assert not in_package, in_package
