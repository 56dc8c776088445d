"""Checkpoints: ``save(obj, path)`` and ``load(path)`` as NumPy .npz files.

Never pickle: unpickling a file can run any code its author wrote into it,
so a checkpoint downloaded from the internet must not be a pickle. An .npz
is a zip archive of .npy files (plain arrays of numbers or strings), so
``np.load(path)`` can read a minidl checkpoint too.

What a checkpoint holds (format version 1):
* one ``NAME.npy`` member per array, NAME being its path of keys, e.g.
  ``model/features.0.weight`` (suffixed with ~1, ~2 ... should two collide);
* the member ``__minidl__.npy``: a 0-d string array holding the JSON record
  ``{"format": "minidl-checkpoint", "version": 1, "tree": NODE}`` where NODE
  describes the saved object:
      {"dict": [[key, NODE], ...]}   a dict (str or int keys, order kept)
      {"list": [NODE, ...]}          a list or tuple (loaded as a list)
      {"array": NAME}                an ndarray (numbers, strings; not objects)
                                     or a Tensor, loaded as a NumPy array
      a JSON number, string, true/false or null: a Python scalar or None.
So ``{"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}``
round-trips, and a file without the record is refused.

Saving is atomic: the archive goes to a temporary file in the same directory,
is flushed and fsync'ed, then renamed over ``path`` with ``os.replace``. A
crash or error mid-write leaves the old checkpoint intact and no temp file.
"""
import json
import os
import secrets
import zipfile

import numpy as np

from .backend import as_numpy, is_cupy_array
from .tensor import Tensor

FORMAT = "minidl-checkpoint"
VERSION = 1
RECORD = "__minidl__"          # the member holding the JSON record


# ----------------------------------------------------------------------------
# save
# ----------------------------------------------------------------------------
def save(obj, path):
    """Write ``obj`` (nested dicts/lists of arrays, Tensors, numbers, strings)
    to ``path`` as a minidl .npz checkpoint, atomically."""
    path = os.fspath(path)
    arrays = {}                                         # member name -> ndarray
    record = {"format": FORMAT, "version": VERSION, "tree": _encode(obj, "", arrays)}
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"save: directory {directory!r} does not exist "
                                f"(saving {path!r})")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                _write_member(archive, RECORD, np.array(json.dumps(record)))
                for name, array in arrays.items():
                    _write_member(archive, name, array)
            f.flush()
            os.fsync(f.fileno())                        # the bytes are on disk ...
        os.replace(tmp, path)                           # ... before the name points at them
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if os.name == "posix":                              # make the rename durable too
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _write_member(archive, name, array):
    with archive.open(name + ".npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, array, allow_pickle=False)


def _encode(obj, where, arrays):
    """The JSON node for ``obj``; its arrays go into ``arrays`` under their
    path ``where`` ("model/features.0.weight")."""
    if isinstance(obj, Tensor):
        obj = obj.data
    if is_cupy_array(obj):
        obj = as_numpy(obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:                         # Python objects: only pickle holds them
            raise TypeError(f"save: {where or 'the object'} is an array of dtype {obj.dtype}; "
                            f"arrays of Python objects cannot be saved without pickle")
        name, n = where or "array", 0
        while name in arrays or name == RECORD:
            n += 1
            name = f"{where or 'array'}~{n}"
        arrays[name] = obj
        return {"array": name}
    if isinstance(obj, np.generic):
        obj = obj.item()                                # NumPy scalar -> Python scalar
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        items = []
        for key, value in obj.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise TypeError(f"save: dict keys must be str or int, got {key!r} "
                                f"in {where or 'the top-level dict'}")
            items.append([key, _encode(value, f"{where}/{key}" if where else str(key),
                                       arrays)])
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        return {"list": [_encode(v, f"{where}/{i}" if where else str(i), arrays)
                         for i, v in enumerate(obj)]}
    raise TypeError(f"save: cannot save a {type(obj).__name__} at {where or 'the top'}: "
                    f"a checkpoint holds dicts, lists, arrays, Tensors, numbers, strings "
                    f"and None")


# ----------------------------------------------------------------------------
# load
# ----------------------------------------------------------------------------
def load(path):
    """Read a checkpoint written by ``save``; arrays come back as NumPy arrays.

    Raises FileNotFoundError for a missing file, and ValueError naming the file
    for anything that is not an intact minidl checkpoint (a pickle, a plain
    .npy or .npz, a truncated archive).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no checkpoint file at {path!r}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] != b"PK":
        raise ValueError(f"load: {path!r} is not a minidl checkpoint: {_describe(magic)}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if RECORD not in archive.files:
                raise _NotACheckpoint("an .npz archive without minidl's record "
                                      f"({RECORD}); it was not written by minidl.save")
            record = json.loads(str(archive[RECORD]))
            if not isinstance(record, dict) or record.get("format") != FORMAT:
                raise _NotACheckpoint(f"its {RECORD} record is not a minidl checkpoint's")
            if record.get("version") != VERSION:
                raise _NotACheckpoint(f"format version {record.get('version')!r}; this "
                                      f"minidl reads version {VERSION}")
            return _decode(record["tree"], archive)
    except _NotACheckpoint as e:
        raise ValueError(f"load: {path!r} is not a minidl checkpoint: {e}") from None
    except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"load: {path!r} is a corrupt or truncated checkpoint "
                         f"({type(e).__name__}: {e})") from None


class _NotACheckpoint(Exception):
    """A readable file that is not a minidl checkpoint (internal to load)."""


def _describe(magic):
    if magic.startswith(b"\x93NUM"):
        return "a single .npy array (np.save), not an .npz written by minidl.save"
    if magic.startswith(b"\x80"):
        return ("a pickle file, which minidl never loads (unpickling can run "
                "arbitrary code)")
    return "not an .npz (zip) archive"


def _decode(node, archive):
    """The object a JSON node describes, its arrays read from ``archive``."""
    if not isinstance(node, dict):
        return node                                     # a JSON scalar
    (tag, value), = node.items()
    if tag == "array":
        return archive[value]
    if tag == "list":
        return [_decode(v, archive) for v in value]
    if tag == "dict":
        return {key: _decode(v, archive) for key, v in value}
    raise ValueError(f"unknown node {tag!r} in the record")
