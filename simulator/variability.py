"""Real heart-rate variability: a recorded NN-interval series as every device's resting rhythm.

``load_nn_intervals(path)`` reads NN intervals in milliseconds from a NumPy ``.npy`` file (1-D,
little-endian integers or floats: what ECG toolkits such as pyhrv ship) or from a text file with one
number per line. ``rhythm(nn_ms, interval_ms)`` turns them into one ratio per sample interval: the
mean heart rate over that interval of the recording divided by the recording's mean heart rate. A
fleet given a series multiplies each device's resting rate by these ratios, each device starting at
its own point of the recording and wrapping around at its end, instead of adding synthetic noise.
"""

from __future__ import annotations

import ast
import struct
import sys
from array import array
from collections.abc import Sequence
from pathlib import Path

_NPY_MAGIC = b"\x93NUMPY"
_NPY_TYPES = {"<i8": "q", "<i4": "i", "<f8": "d", "<f4": "f"}


class VariabilityFormatError(ValueError):
    """The file is not an NN-interval series this module reads; the message says why."""


def load_nn_intervals(path: Path) -> tuple[float, ...]:
    """NN intervals (ms) of ``path``. Raises ``OSError`` or ``VariabilityFormatError``."""
    data = path.read_bytes()
    values = _npy(data) if data.startswith(_NPY_MAGIC) else _text(data)
    if len(values) < 2 or not all(200.0 <= v <= 3_000.0 for v in values):
        raise VariabilityFormatError("expected at least 2 NN intervals, each 200-3000 ms")
    return values


def rhythm(nn_ms: Sequence[float], interval_ms: int) -> list[float]:
    """One heart-rate ratio per whole ``interval_ms`` of the recording (see the module docstring)."""
    mean_rate = len(nn_ms) / sum(nn_ms)
    ratios: list[float] = []
    elapsed = count = 0.0
    edge = float(interval_ms)
    window_start = 0.0
    for nn in nn_ms:
        elapsed += nn
        count += 1
        if elapsed >= edge:
            ratios.append(count / (elapsed - window_start) / mean_rate)
            window_start, count = elapsed, 0.0
            edge = (elapsed // interval_ms + 1) * interval_ms
    if not ratios:
        raise VariabilityFormatError(f"the recording is shorter than one interval ({interval_ms} ms)")
    return ratios


def _npy(data: bytes) -> tuple[float, ...]:
    if len(data) < 10:
        raise VariabilityFormatError("truncated .npy header")
    major = data[6]
    if major == 1:
        (length,), start = struct.unpack_from("<H", data, 8), 10
    else:
        (length,), start = struct.unpack_from("<I", data, 8), 12
    try:
        header = ast.literal_eval(data[start : start + length].decode("latin-1"))
        descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
    except (ValueError, SyntaxError, KeyError, TypeError) as exc:
        raise VariabilityFormatError(f"unreadable .npy header: {exc}") from None
    if descr not in _NPY_TYPES or fortran or len(shape) != 1:
        raise VariabilityFormatError(f"expected a 1-D array of {', '.join(_NPY_TYPES)}, got {descr} {shape}")
    values = array(_NPY_TYPES[descr])
    body = data[start + length :]
    if len(body) != shape[0] * values.itemsize:
        raise VariabilityFormatError("the .npy body does not match its shape")
    values.frombytes(body)
    if sys.byteorder == "big":
        values.byteswap()
    return tuple(float(v) for v in values)


def _text(data: bytes) -> tuple[float, ...]:
    try:
        return tuple(float(line) for line in data.decode().split() if line)
    except (UnicodeDecodeError, ValueError):
        raise VariabilityFormatError("expected a .npy file or one number per line") from None
