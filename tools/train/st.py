# st.py: minimal safetensors reader/writer with numpy + json (the
# `safetensors` package is not installed here).  Layout: u64 LE header
# length, JSON header (padded with spaces to 8-byte alignment), data buffer.
import json
import struct

import numpy as np

_DT = {
    "F32": np.float32, "F64": np.float64, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_,
}
_DT_REV = {np.dtype(v).str: k for k, v in _DT.items()}


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    return hdr, 8 + n


def load(path):
    """-> (dict name -> numpy array (a copy), metadata dict or {})."""
    hdr, start = read_header(path)
    meta = hdr.pop("__metadata__", None) or {}
    with open(path, "rb") as f:
        f.seek(start)
        buf = f.read()
    out = {}
    for name, e in hdr.items():
        b, en = e["data_offsets"]
        dt = np.dtype(_DT[e["dtype"]]).newbyteorder("<")
        a = np.frombuffer(buf, dtype=dt, count=(en - b) // dt.itemsize,
                          offset=b)
        out[name] = a.reshape(e["shape"]).copy()
    return out, meta


def save(path, tensors, metadata=None):
    """tensors: dict name -> numpy array; metadata: dict str -> str."""
    hdr = {}
    if metadata:
        hdr["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    off = 0
    items = []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        key = _DT_REV.get(np.dtype(dt).newbyteorder("<").str) or \
            _DT_REV.get(np.dtype(dt).str)
        if key is None:
            raise ValueError("unsupported dtype %s for %s" % (a.dtype, name))
        raw = a.astype(np.dtype(_DT[key]).newbyteorder("<"), copy=False).tobytes()
        hdr[name] = {"dtype": key, "shape": list(a.shape),
                     "data_offsets": [off, off + len(raw)]}
        items.append(raw)
        off += len(raw)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in items:
            f.write(raw)
