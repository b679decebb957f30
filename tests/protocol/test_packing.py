"""The wire form of a model: packed per dtype, unpacked only for the layout it was packed for."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from models.segmenters import build_segmenter
from protocol.packing import PackingError, layout_of, pack, packed_keys, unpack


def _record() -> ArrayRecord:
    return ArrayRecord({
        "conv.weight": Array(np.arange(24, dtype=np.float32).reshape(2, 3, 4)),
        "bn.num_batches_tracked": Array(np.array(7, np.int64)),
        "bn.running_mean": Array(np.array([0.5, -1.5], np.float32)),
    })  # fmt: skip


def test_pack_is_one_flat_array_per_dtype_and_unpack_restores_every_tensor() -> None:
    record = _record()
    packed = pack(record)
    assert list(packed.keys()) == list(packed_keys(layout_of(record))) and len(packed) == 2
    float_key, int_key = packed.keys()
    assert float_key.startswith("float32@") and int_key.startswith("int64@")
    np.testing.assert_array_equal(packed[float_key].numpy(), np.r_[np.arange(24), 0.5, -1.5].astype(np.float32))
    restored = unpack(packed, layout_of(record))
    assert list(restored.keys()) == list(record.keys())
    for key in record:
        assert restored[key].shape == record[key].shape and restored[key].dtype == record[key].dtype
        np.testing.assert_array_equal(restored[key].numpy(), record[key].numpy())


def test_meta_device_model_has_the_layout_of_the_real_one() -> None:
    with torch.device("meta"):
        meta = build_segmenter("deeplabv3").state_dict()
    real = ArrayRecord(build_segmenter("deeplabv3").state_dict())
    assert layout_of(meta) == layout_of(real)
    assert len(pack(real)) == 2  # float32 weights and int64 BatchNorm counters: 2 arrays for 156 tensors


def test_unpack_refuses_another_layout_and_a_wrong_size() -> None:
    record = _record()
    renamed = ArrayRecord({("conv.w" if k == "conv.weight" else k): v for k, v in record.items()})  # same sizes
    with pytest.raises(PackingError, match="do not fit this model"):
        unpack(pack(renamed), layout_of(record))
    packed = pack(record)
    float_key, int_key = packed.keys()
    short = ArrayRecord({float_key: Array(packed[float_key].numpy()[:-1]), int_key: packed[int_key]})
    with pytest.raises(PackingError, match="25 values.*needs 26"):
        unpack(short, layout_of(record))
    with pytest.raises(PackingError, match="do not fit"):
        unpack(record, layout_of(record))  # not packed at all
