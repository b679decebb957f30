"""The wire form of a model: its arrays packed into one flat array per dtype.

Flower sends every Array of an ArrayRecord as its own objects, one HTTP request each, through the
gateway, the SuperLink and the SuperNode: the demo classifier's 77 tensors made 131 objects and
7 s of waiting per message on the 2-core machine, more than all the site's own work. Messages
therefore carry a model *packed*: one 1-D array per dtype, the tensors concatenated in the model's
state order. Its keys are ``<dtype>@<layout digest>``, so a model packed for one architecture is
refused, not silently mis-split, by another. Both ends know the layout (tensor names, dtypes and
shapes) from the model they build; it never travels. Element-wise aggregation (FedAvg, FedProx)
gives the same result on the packed arrays as on the tensors one by one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord

Layout = tuple[tuple[str, str, tuple[int, ...]], ...]  # (tensor name, numpy dtype name, shape), in state order


class PackingError(ValueError):
    """Packed arrays that do not fit the model they are unpacked for."""


def layout_of(state: ArrayRecord | Mapping[str, Any]) -> Layout:
    """The layout of a model's arrays: an ArrayRecord, or a state dict of tensors (also on the meta device)."""
    out = []
    for name, value in state.items():
        # an Array's dtype is a numpy name; a torch tensor's reads "torch.<name>" (no data is read, so meta tensors work)
        dtype = str(value.dtype) if isinstance(value, Array) else str(value.dtype).removeprefix("torch.")
        out.append((str(name), str(np.dtype(dtype)), tuple(int(d) for d in value.shape)))
    return tuple(out)


def layout_digest(layout: Layout) -> str:
    """A short digest of a layout (names, dtypes, shapes, order)."""
    return hashlib.sha256(repr(layout).encode()).hexdigest()[:12]


def packed_keys(layout: Layout) -> tuple[str, ...]:
    """The keys of a packed model of this layout: one per dtype, in order of first appearance."""
    digest = layout_digest(layout)
    return tuple(f"{dtype}@{digest}" for dtype in dict.fromkeys(d for _, d, _ in layout))


def packed_signature(layout: Layout) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The keys, dtypes and shapes of a packed model of this layout (what a reply packed for it must show), without its values."""
    sizes: dict[str, int] = {}
    for _, dtype, shape in layout:
        sizes[dtype] = sizes.get(dtype, 0) + int(np.prod(shape))
    return {key: (dtype, (size,)) for key, (dtype, size) in zip(packed_keys(layout), sizes.items(), strict=True)}


def pack(record: ArrayRecord) -> ArrayRecord:
    """A model's arrays as one flat array per dtype (the wire form)."""
    layout = layout_of(record)
    groups: dict[str, list[np.ndarray]] = {}
    for name, dtype, _ in layout:
        groups.setdefault(dtype, []).append(np.asarray(record[name].numpy(), dtype=dtype).reshape(-1))
    keys = packed_keys(layout)
    return ArrayRecord({key: Array(np.concatenate(parts)) for key, parts in zip(keys, groups.values(), strict=True)})


def unpack(record: ArrayRecord, layout: Layout) -> ArrayRecord:
    """The model's tensors (as an ArrayRecord) from its packed arrays; ``PackingError`` says what does not fit.

    Each tensor keeps the dtype it has in ``record`` (an aggregate may be float64), so callers
    that need the model's own dtypes cast (``strategies.site_aware.restore_dtypes``).
    """
    expected = packed_keys(layout)
    if tuple(record.keys()) != expected:
        raise PackingError(f"model arrays {sorted(record.keys())} do not fit this model (expected {list(expected)})")
    flat = {key.split("@", 1)[0]: record[key].numpy() for key in expected}
    for dtype, values in flat.items():
        needed = sum(int(np.prod(shape)) for _, d, shape in layout if d == dtype)
        if values.ndim != 1 or values.size != needed:
            raise PackingError(f"packed {dtype} arrays hold {values.size} values in shape {values.shape}; this model needs {needed} in one row")
    offsets = dict.fromkeys(flat, 0)
    out: dict[str, Array] = {}
    for name, dtype, shape in layout:
        size = int(np.prod(shape))
        start = offsets[dtype]
        out[name] = Array(flat[dtype][start : start + size].reshape(shape).copy())  # not ascontiguousarray: it makes 0-d 1-d
        offsets[dtype] = start + size
    return ArrayRecord(out)
