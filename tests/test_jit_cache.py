"""Numba's compiled kernels are cached outside the package, so caching works
when minidl is installed read-only in site-packages, in a folder named by a
hash of the package's sources, so that an edited helper is never run stale
from the cache (minidl/jit.py)."""
import json
import os
import re
import shutil
import subprocess
import sys

from minidl import jit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def copy_package(tmp_path):
    """A copy of minidl (with its kernels) under tmp_path/site, as pip installs it."""
    site = tmp_path / "site"
    shutil.copytree(os.path.join(ROOT, "minidl"), site / "minidl",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(os.path.join(ROOT, "kernels"), site / "minidl" / "kernels",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return site


def run_python(code, site, home, **extra_env):
    """stdout of ``python -c code`` with minidl from ``site`` and HOME = ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "MINIDL_"))}
    env.update(HOME=str(home), PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1", **extra_env)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=str(home.parent), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


# a conv2d forward + backward; prints the sum of grad x, then Numba's cache folder
CONV_GRAD = ("import numpy as np, minidl, minidl.nn.functional as F, numba;"
             "x = minidl.Tensor(np.ones((1, 2, 5, 5), np.float32), requires_grad=True);"
             "F.conv2d(x, minidl.Tensor(np.ones((3, 2, 3, 3), np.float32))).sum().backward();"
             "print(float(x.grad.data.sum())); print(numba.config.CACHE_DIR)")
CONV_GRAD_SUM = 9 * 3 * 9 * 2          # 3x3 outputs x 3 out channels x 9 taps x 2 in channels


def test_cache_goes_to_the_user_cache_dir_not_the_package(tmp_path):
    site, home = copy_package(tmp_path), tmp_path / "home"
    cache = home / ".cache" / "minidl" / "numba" / ("minidl-" + jit.source_hash())
    assert run_python(CONV_GRAD, site, home).split() == [str(float(CONV_GRAD_SUM)), str(cache)]
    cached = [f for _, _, files in os.walk(cache) for f in files if f.endswith((".nbi", ".nbc"))]
    assert cached, "no Numba cache files were written to the user cache dir"
    in_package = [f for _, _, files in os.walk(site) for f in files if f.endswith(".nbi")]
    assert not in_package, in_package


# avg_pool2d's backward (ops/pool.py) compiles in im2col.py's _fill_zero
POOL_GRAD = ("import numpy as np, minidl, minidl.nn.functional as F;"
             "x = minidl.Tensor(np.ones((1, 1, 4, 4), np.float32), requires_grad=True);"
             "F.avg_pool2d(x, 2, 1).sum().backward(); print(x.grad.data.ravel().tolist())")


def pool_grad(site, home):
    return json.loads(run_python(POOL_GRAD, site, home))


def test_an_edited_helper_is_not_run_from_the_cache(tmp_path):
    """Numba alone would rerun pool.py's cached kernel with the old helper."""
    site, home = copy_package(tmp_path), tmp_path / "home"
    counts = [1, 2, 2, 1, 2, 4, 4, 2, 2, 4, 4, 2, 1, 2, 2, 1]   # windows over each pixel
    assert pool_grad(site, home) == [c / 4 for c in counts]
    helpers = site / "minidl" / "ops" / "im2col.py"
    source = helpers.read_text()
    zero = "        dst[np.uint64(start + j)] = 0\n"
    assert source.count(zero) == 1, "the test's edit no longer applies: update it"
    helpers.write_text(source.replace(zero, zero.replace("= 0", "= 7")))   # 'zero' fills 7
    assert pool_grad(site, home) == [7 + c / 4 for c in counts]
    folders = os.listdir(home / ".cache" / "minidl" / "numba")
    assert len(folders) == 2 and all(re.fullmatch("minidl-[0-9a-f]{16}", f) for f in folders)


def test_a_child_of_a_minidl_process_uses_its_own_source_folder(tmp_path):
    """NUMBA_CACHE_DIR as a parent minidl process left it: its hash is dropped."""
    site, home = copy_package(tmp_path), tmp_path / "home"
    parent = tmp_path / "cache" / "minidl-0123456789abcdef"
    code = "import minidl, numba; print(numba.config.CACHE_DIR)"
    out = run_python(code, site, home, NUMBA_CACHE_DIR=str(parent)).strip()
    assert out == str(tmp_path / "cache" / ("minidl-" + jit.source_hash()))


def test_prune_keeps_the_current_and_the_most_recent_folders(tmp_path):
    folders = [tmp_path / f"minidl-{i:016x}" for i in range(5)]
    for age, folder in enumerate(folders):
        folder.mkdir()
        os.utime(folder, (1e9 - age, 1e9 - age))           # folders[0] the newest
    other = tmp_path / "someone-else"
    other.mkdir()
    current = folders[4]                                    # the oldest, but in use
    jit.prune_old_caches(str(current), keep=3)
    assert sorted(os.listdir(tmp_path)) == sorted([folders[0].name, folders[1].name,
                                                   current.name, other.name])


def test_an_unwritable_cache_folder_does_not_stop_the_import(tmp_path):
    """Numba then caches where it can (or compiles at every start): minidl still runs."""
    site, home = copy_package(tmp_path), tmp_path / "home"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = run_python(CONV_GRAD, site, home, MINIDL_CACHE_DIR=str(blocker / "cache"))
    assert float(out.split()[0]) == CONV_GRAD_SUM
