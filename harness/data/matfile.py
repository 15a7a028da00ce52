"""``GTcls.Segmentation`` out of an SBD ``cls/*.mat`` file, as mmseg's converter reads it.

mmseg does ``loadmat(f)['GTcls'][0]['Segmentation'][0].astype(np.uint8)``. ``scipy.io.loadmat``
builds every field, including ``Boundaries`` (a cell of 20 sparse matrices), which is most of its
~0.45 ms per small file, and importing scipy.io costs ~0.4 s per process. The fast path here walks
the MATLAB v5 element tags, skips the other fields by their byte counts and reads the one array
the converter keeps. Anything it does not recognise (big-endian, v7.3/HDF5, odd layouts, corrupt
files) goes to scipy, which also produces the error messages, so the fast path can only ever be
an optimisation of the same read.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

MI_MATRIX, MI_COMPRESSED = 14, 15
MI_INT8, MI_INT32, MI_UINT32 = 1, 5, 6
MX_STRUCT = 2
# MATLAB storage types -> little-endian numpy dtypes (data may be stored narrower than its class).
MI_DTYPES = {1: "<i1", 2: "<u1", 3: "<i2", 4: "<u2", 5: "<i4", 6: "<u4", 7: "<f4", 9: "<f8", 12: "<i8", 13: "<u8"}
MX_NUMERIC = range(6, 16)  # double, single, int8 .. uint64
VARIABLE, FIELD = "GTcls", "Segmentation"
# Bounds on what one label file may cost. SBD labels are at most 500x500 uint8 (~0.3 MB with
# their boundaries, inflated); a few kilobytes of zlib can inflate to gigabytes, so inflation
# stops at the bound and the file is refused instead of read.
MAX_LABEL_PIXELS = 4096 * 4096
MAX_DECOMPRESSED_BYTES = 2 * MAX_LABEL_PIXELS  # a 4096x4096 uint8 label and its boundaries, or uint16


class MatError(ValueError):
    """A .mat file the converter cannot use; ``str()`` names the problem (the caller adds the file)."""


def read_segmentation(path: Path | str) -> np.ndarray:
    """The HxW ``GTcls.Segmentation`` array, values checked to be class ids (0..20, or 255)."""
    return segmentation_from_bytes(_read_file(str(path)))


def segmentation_from_bytes(buf: bytes) -> np.ndarray:
    """``read_segmentation`` of a .mat file's bytes (a member streamed out of SBD's archive)."""
    raw = _fast_read(buf)
    if raw is None:
        _check_inflated_size(buf)  # scipy would inflate a bomb whole
        raw = _scipy_read(buf)
    if raw.size > MAX_LABEL_PIXELS:
        raise MatError(f"GTcls.Segmentation has {raw.size} pixels, more than the {MAX_LABEL_PIXELS} any label may have")
    _check_values(raw)
    return raw.astype(np.uint8)


def _read_file(path: str) -> bytes:
    # open/read/close and nothing else: per-file syscalls are what a few thousand small files cost.
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, 1 << 22)]
        while len(chunks[-1]) == 1 << 22:
            chunks.append(os.read(fd, 1 << 22))
    finally:
        os.close(fd)
    return b"".join(chunks) if len(chunks) > 1 else chunks[0]


def _check_values(raw: np.ndarray) -> None:
    if raw.ndim != 2 or raw.size == 0:
        raise MatError(f"GTcls.Segmentation has shape {raw.shape}, expected a non-empty HxW array")
    flat = raw.ravel(order="K")  # MATLAB arrays are column-major: "K" avoids a copy
    if raw.dtype == np.uint8:
        if flat.max() <= 20:  # the usual case, one vectorised pass
            return
        counts = np.bincount(flat, minlength=256)
        bad = np.flatnonzero(counts[21:255]) + 21
    else:
        values = np.unique(flat)
        bad = values[~(((values >= 0) & (values <= 20)) | (values == 255)) | (values != np.floor(values))]
    if len(bad):
        shown = ", ".join(str(v) for v in bad[:5].tolist())
        raise MatError(f"GTcls.Segmentation holds values outside 0..20 and 255: {shown}")


def _scipy_read(buf: bytes) -> np.ndarray:
    import io

    from scipy.io import loadmat

    try:
        data = loadmat(io.BytesIO(buf), variable_names=[VARIABLE])
    except Exception as exc:  # scipy raises many types for foreign bytes; all mean the same here
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise MatError(f"not a readable MATLAB file ({detail})") from None
    if VARIABLE not in data:
        raise MatError(f"no {VARIABLE} variable")
    gtcls = data[VARIABLE]
    if gtcls.dtype.names is None or FIELD not in gtcls.dtype.names:
        raise MatError(f"{VARIABLE} is not a struct with a {FIELD} field")
    try:
        seg = gtcls[0][FIELD][0]  # exactly mmseg's indexing
    except IndexError:
        raise MatError(f"{VARIABLE} is an empty struct") from None
    if not isinstance(seg, np.ndarray) or seg.dtype.kind not in "biuf":
        raise MatError(f"{VARIABLE}.{FIELD} is not a numeric array")
    return seg


def _fast_read(buf: bytes) -> np.ndarray | None:
    try:
        return _find_variable(memoryview(buf))
    except MatError:
        raise  # a bound was hit: scipy must not try the same file
    except (struct.error, zlib.error, ValueError, KeyError, IndexError):
        return None


def _inflate(body: memoryview | bytes) -> bytes:
    """zlib-inflate one compressed element, stopping (MatError) past ``MAX_DECOMPRESSED_BYTES``."""
    inflater = zlib.decompressobj()
    data = inflater.decompress(body, MAX_DECOMPRESSED_BYTES + 1)
    if len(data) > MAX_DECOMPRESSED_BYTES:
        raise MatError(f"decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes (a label is at most "
                       f"{MAX_LABEL_PIXELS} pixels)")
    return data


def _check_inflated_size(buf: bytes) -> None:
    """Walk the top-level elements of a v5 file of either byte order and inflate each compressed
    one under the bound (discarding the output); anything unrecognised is left to scipy."""
    if len(buf) < 136 or bytes(buf[126:128]) not in (b"IM", b"MI"):
        return
    order = "<" if bytes(buf[126:128]) == b"IM" else ">"
    pos = 128
    try:
        while pos + 8 <= len(buf):
            mtype, nbytes = struct.unpack_from(f"{order}II", buf, pos)
            if mtype == MI_COMPRESSED:
                _inflate(memoryview(buf)[pos + 8 : pos + 8 + nbytes])
            pos += 8 + (nbytes if mtype == MI_COMPRESSED else _pad8(nbytes))
    except (struct.error, zlib.error):
        return


def _find_variable(buf: memoryview) -> np.ndarray | None:
    if len(buf) < 136 or bytes(buf[126:128]) != b"IM":  # little-endian v5 only
        return None
    pos = 128
    while pos + 8 <= len(buf):
        mtype, nbytes = struct.unpack_from("<II", buf, pos)
        body = buf[pos + 8 : pos + 8 + nbytes]
        pos += 8 + (nbytes if mtype == MI_COMPRESSED else _pad8(nbytes))
        if mtype == MI_COMPRESSED:
            inner = memoryview(_inflate(body))
            mtype, nbytes = struct.unpack_from("<II", inner, 0)
            body = inner[8 : 8 + nbytes]
        if mtype != MI_MATRIX:
            return None
        header = _matrix_header(body)
        if header["name"] == VARIABLE:
            return _segmentation(body, header)
    return None


def _segmentation(body: memoryview, header: dict) -> np.ndarray | None:
    if header["class"] != MX_STRUCT or header["dims"] != (1, 1):
        return None
    pos = header["end"]
    mtype, data, pos = _element(body, pos)
    if mtype != MI_INT32 or len(data) != 4:
        return None
    name_len = struct.unpack("<i", data)[0]
    mtype, data, pos = _element(body, pos)
    if mtype != MI_INT8 or name_len <= 0:
        return None
    names = [bytes(data[i : i + name_len]).split(b"\0", 1)[0].decode("ascii")
             for i in range(0, len(data), name_len)]
    for name in names:
        mtype, field, pos = _element(body, pos)
        if mtype != MI_MATRIX:
            return None
        if name == FIELD:
            return _numeric(field)
    return None


def _numeric(body: memoryview) -> np.ndarray | None:
    header = _matrix_header(body)
    if header["class"] not in MX_NUMERIC or header["complex"] or len(header["dims"]) != 2:
        return None
    mtype, data, _ = _element(body, header["end"])
    rows, cols = header["dims"]
    if mtype not in MI_DTYPES:
        return None
    values = np.frombuffer(data, dtype=MI_DTYPES[mtype])
    if values.size != rows * cols:
        return None
    return values.reshape(cols, rows).T  # MATLAB stores column-major


def _matrix_header(body: memoryview) -> dict:
    mtype, flags, pos = _element(body, 0)
    if mtype != MI_UINT32 or len(flags) != 8:
        raise ValueError("array flags")
    word = struct.unpack_from("<I", flags, 0)[0]
    mtype, dims, pos = _element(body, pos)
    if mtype != MI_INT32:
        raise ValueError("dimensions")
    mtype, name, pos = _element(body, pos)
    return {
        "class": word & 0xFF,
        "complex": bool(word & 0x800),
        "dims": tuple(np.frombuffer(dims, dtype="<i4").tolist()),
        "name": bytes(name).decode("latin-1"),
        "end": pos,
    }


def _element(buf: memoryview, pos: int) -> tuple[int, memoryview, int]:
    """(type, data, next position) of the data element at ``pos``, small-element format included."""
    first, second = struct.unpack_from("<II", buf, pos)
    if first >> 16:  # small element: type and size share the first word, data the second
        size = first >> 16
        if size > 4:
            raise ValueError("small element")
        return first & 0xFFFF, buf[pos + 4 : pos + 4 + size], pos + 8
    end = pos + 8 + second
    if end > len(buf):
        raise ValueError("element runs past its parent")
    return first, buf[pos + 8 : end], pos + 8 + _pad8(second)


def _pad8(n: int) -> int:
    return (n + 7) & ~7
