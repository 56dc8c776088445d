"""The ``minidl`` command line, run in-process as a user would type it."""
import os
import subprocess
import sys

import numpy as np
import pytest

from minidl.cli import main
from minidl.data import load_digits


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short training run shared by the tests below."""
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "lenet5", "--epochs", "2", "--out", str(out),
                 "--no-progress", "--workers", "0"]) == 0
    return out


def digit_png(path, index=0):
    """A test-set digit written as a grey PNG, as a user would bring one."""
    from PIL import Image
    x, y = load_digits(32, "test")
    Image.fromarray((x[index, 0] * 255).astype(np.uint8)).save(path)
    return int(y[index])


def test_train_writes_report_checkpoint_and_curve(trained, capsys):
    assert (trained / "checkpoint.npz").exists()
    assert (trained / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_report_ends_with_test_accuracy(tmp_path, capsys):
    assert main(["train", "lenet5", "--epochs", "1", "--out", str(tmp_path),
                 "--no-progress", "--workers", "0"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ") and last.endswith("%")
    assert float(last.split()[-1].rstrip("%")) > 50


def test_train_resumes_from_its_checkpoint(trained, capsys):
    assert main(["train", "lenet5", "--epochs", "2", "--out", str(trained),
                 "--no-progress"]) == 0
    assert "resumed" in capsys.readouterr().out


def test_predict_plain_ten_crop_and_ensemble(trained, tmp_path, capsys):
    paths = [str(tmp_path / f"d{i}.png") for i in range(4)]
    labels = [digit_png(p, i) for i, p in enumerate(paths)]
    ck = str(trained / "checkpoint.npz")
    for extra in ([], ["--ten-crop"], ["--ensemble", ck], ["--ten-crop", "--ensemble", ck]):
        assert main(["predict", ck, *paths, *extra]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == 4 and all("class" in line for line in lines)
    predicted = [int(line.split("class ")[1].split()[0]) for line in lines]
    assert sum(p == t for p, t in zip(predicted, labels)) >= 2


def test_predict_missing_image_and_bad_checkpoint(trained, tmp_path, capsys):
    ck = str(trained / "checkpoint.npz")
    assert main(["predict", ck, str(tmp_path / "nope.png")]) == 2
    assert "nope.png" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    png = str(tmp_path / "d.png")
    digit_png(png)
    assert main(["predict", str(bad), png]) == 2
    assert "bad.npz" in capsys.readouterr().err


def test_summary_prints_the_table(capsys):
    assert main(["summary", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "61,706" in out or "61706" in out


def test_summary_custom_input_size(capsys):
    assert main(["summary", "resnet18", "--input-size", "3", "64", "64"]) == 0
    assert "11,689,512" in capsys.readouterr().out


def test_unknown_network_lists_the_known_ones(capsys):
    assert main(["summary", "lenet7"]) == 2
    err = capsys.readouterr().err
    assert "lenet7" in err and "lenet5" in err and "resnet50" in err
    assert main(["train", "vgg16", "--epochs", "1"]) == 2
    assert "lenet5" in capsys.readouterr().err


def test_gradcheck_command(capsys):
    assert main(["gradcheck", "lenet5"]) == 0
    assert "passed" in capsys.readouterr().out


def test_augment_writes_png(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["augment", "china", "--out", str(out), "--seed", "1"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert main(["augment", str(tmp_path / "missing.jpg")]) == 2
    assert "missing.jpg" in capsys.readouterr().err


def test_help_everywhere():
    for args in (["--help"], ["train", "--help"], ["summary", "--help"], ["predict", "--help"],
                 ["augment", "--help"], ["gradcheck", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 0


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "minidl", "--help"], capture_output=True,
                       text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert r.returncode == 0 and "train" in r.stdout


def test_train_data_parallel_on_two_ranks(tmp_path):
    pytest.importorskip("mpi4py", reason='the dist extra (pip install ".[dist]") is not installed')
    r = subprocess.run([sys.executable, "-m", "minidl", "train", "lenet5", "--epochs", "1",
                        "--nproc", "2", "--out", str(tmp_path), "--no-progress",
                        "--workers", "0"],
                       capture_output=True, text=True, timeout=300,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("test accuracy: ") == 1          # rank 0 reports alone
    assert (tmp_path / "checkpoint.npz").exists()


def test_bench_passes_its_own_options(capsys):
    assert main(["bench", "--list"]) in (0, None)
    assert "conv/vgg_conv3_1" in capsys.readouterr().out
