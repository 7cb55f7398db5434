"""Reading a TensorFlow checkpoint (tf.train.Saver, format V2) without TensorFlow.

A checkpoint with prefix P is two or more files:

    P.index                    an SSTable (LevelDB table format): key "" -> BundleHeaderProto,
                               key = variable name -> BundleEntryProto (dtype, shape, shard,
                               offset, size, crc32c of the bytes)
    P.data-00000-of-00001 ...  the raw little-endian tensor bytes of each shard

The table is read block by block (prefix-compressed entries, restart array, 5-byte trailer of
compression type and masked crc32c), the protobuf messages by their wire format. Every block's
checksum, every tensor's place in its shard and every tensor's crc32c are checked, so
a truncated or corrupted file raises one clear ValueError instead of returning garbage.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

__all__ = ["read_tf_checkpoint", "checkpoint_prefix"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_BYTES = 48  # two BlockHandles padded to 40 bytes, then the magic number
_TRAILER_BYTES = 5  # compression type, masked crc32c

# tensorflow/core/framework/types.proto DataType -> numpy (little-endian)
_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 17: "<u2",
           19: "<f2", 22: "<u4", 23: "<u8"}


# --- crc32c (Castagnoli), as LevelDB masks it --------------------------------------------


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _masked_crc32c(data: bytes) -> int:
    """LevelDB's masked crc32c, byte by byte (for small blocks)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return _mask(crc ^ 0xFFFFFFFF)


def _masked_crc32c_fast(data: bytes, lanes: int = 1024) -> int:
    """The same for megabytes: `lanes` equal slices run through the table side by side in numpy,
    then joined. CRC registers are linear over GF(2): the register after slice A then slice B is
    the register after A shifted through len(B) zero bytes, XOR the register of B from zero."""
    length = len(data) // lanes
    if length < 64:
        return _masked_crc32c(data)
    table = np.array(_CRC_TABLE, dtype=np.uint32)
    block = np.frombuffer(data, dtype=np.uint8, count=lanes * length).reshape(lanes, length).astype(np.uint32)
    reg = np.zeros(lanes, dtype=np.uint32)
    reg[0] = 0xFFFFFFFF
    basis = np.uint32(1) << np.arange(32, dtype=np.uint32)  # where each register bit goes after `length` zeros
    for i in range(length):
        reg = table[(reg ^ block[:, i]) & 0xFF] ^ (reg >> 8)
        basis = table[basis & 0xFF] ^ (basis >> 8)
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1  # (256 byte values, 8 bits)
    shift = [np.bitwise_xor.reduce(np.where(bits == 1, basis[8 * k:8 * k + 8], 0).astype(np.uint32), axis=1)
             for k in range(4)]  # per register byte: the shifted image of each of its 256 values
    crc = int(reg[0])
    for lane in reg[1:].tolist():
        crc = int(shift[0][crc & 0xFF] ^ shift[1][(crc >> 8) & 0xFF] ^ shift[2][(crc >> 16) & 0xFF]
                  ^ shift[3][crc >> 24]) ^ lane
    for byte in data[lanes * length:]:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return _mask(crc ^ 0xFFFFFFFF)


# --- wire formats --------------------------------------------------------------------------


class _Corrupt(Exception):
    """Raised inside the parser; turned into one ValueError naming the file."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Corrupt("a varint runs past its buffer")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: ints for varint/fixed, bytes for length-delimited."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise _Corrupt(f"protobuf wire type {wire} is not used by checkpoints")
        if pos > len(buf):
            raise _Corrupt("a protobuf field runs past its message")
        out.append((number, value))
    return out


def _block(data: bytes, handle: bytes) -> bytes:
    """The contents of the block that a BlockHandle (offset, size varints) points at, checked."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    end = offset + size + _TRAILER_BYTES
    if end > len(data):
        raise _Corrupt(f"a block at byte {offset} runs past the end of the file")
    contents, kind = data[offset:offset + size], data[offset + size]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    if _masked_crc32c(contents + bytes([kind])) != stored:
        raise _Corrupt(f"the block at byte {offset} fails its crc32c check")
    if kind != 0:
        raise _Corrupt(f"block compression type {kind} (only uncompressed tables are read)")
    return contents


def _entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs of a table block: prefix-compressed keys, then the restart array."""
    if len(block) < 4:
        raise _Corrupt("a block is shorter than its restart count")
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * restarts
    if end < 0:
        raise _Corrupt("a block's restart array is larger than the block")
    out, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        size, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + size > end:
            raise _Corrupt("a block entry runs past its block")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        out.append((key, block[pos:pos + size]))
        pos += size
    return out


def _shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for number, value in _fields(buf):
        if number == 2:  # Dim {int64 size = 1; string name = 2}
            dims.append(next((v for n, v in _fields(value) if n == 1), 0))
        elif number == 3 and value:
            raise _Corrupt("a tensor of unknown rank")
    return tuple(dims)


# --- the checkpoint --------------------------------------------------------------------------


def checkpoint_prefix(path: str | Path) -> str:
    """The prefix P of a checkpoint given as P, as P.index, or as a folder holding one `*.index`.

    A string, since a prefix may end with a separator: musicnn's checkpoints are folders whose
    prefix is the folder itself (files `.index`, `.data-00000-of-00001`). Raises
    FileNotFoundError when no index file is there.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.index"))  # pathlib's glob also matches the bare ".index"
        if len(found) != 1:
            raise FileNotFoundError(f"{path} holds {len(found)} TensorFlow checkpoint index files (*.index); "
                                    "give the checkpoint prefix instead of the folder")
        return str(found[0])[: -len(".index")]
    prefix = str(path)[: -len(".index")] if path.name.endswith(".index") else str(path)
    if not Path(f"{prefix}.index").is_file():
        raise FileNotFoundError(f"no TensorFlow checkpoint at {prefix}: {prefix}.index does not exist")
    return prefix


def read_tf_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a TF checkpoint (prefix, `.index` file or folder): name -> numpy array.

    Raises FileNotFoundError for a missing index or data shard and ValueError, naming the
    file, for anything that is not a readable V2 checkpoint (truncated, corrupted, another
    format, partitioned variables).
    """
    prefix = checkpoint_prefix(path)
    index = Path(f"{prefix}.index")
    try:
        return _read(prefix, index.read_bytes())
    except _Corrupt as error:
        raise ValueError(f"{index} is not a readable TensorFlow checkpoint ({error}); fetch it again "
                         "(`emostyle weights verify` checks the registry's files)") from None


def _read(prefix: str, data: bytes) -> dict[str, np.ndarray]:
    if len(data) < _FOOTER_BYTES:
        raise _Corrupt(f"{len(data)} bytes, shorter than a table footer")
    (magic,) = struct.unpack_from("<Q", data, len(data) - 8)
    if magic != _TABLE_MAGIC:
        raise _Corrupt("no SSTable magic number at its end: not a checkpoint index, or truncated")
    footer = data[-_FOOTER_BYTES:]
    _, pos = _varint(footer, 0)
    _, pos = _varint(footer, pos)  # metaindex handle: empty in checkpoints
    index_handle = footer[pos:]
    records = [kv for _, handle in _entries(_block(data, index_handle)) for kv in _entries(_block(data, handle))]
    table = dict(records)
    if b"" not in table:
        raise _Corrupt("no bundle header (empty key)")
    header = dict(_fields(table.pop(b"")))
    shards = header.get(1, 1)
    if header.get(2, 0) != 0:
        raise _Corrupt("a big-endian checkpoint")
    blobs: dict[int, bytes] = {}
    tensors = {}
    for key, value in table.items():
        name = key.decode("utf-8", errors="replace")
        entry = dict(_fields(value))  # repeated fields keep their last value: only `slices` repeats
        if 7 in entry:
            raise _Corrupt(f"variable {name} is partitioned (slices), which this reader does not join")
        shard, offset, size = entry.get(3, 0), entry.get(4, 0), entry.get(5, 0)
        if shard not in blobs:
            shard_file = Path(f"{prefix}.data-{shard:05d}-of-{shards:05d}")
            if not shard_file.is_file():
                raise FileNotFoundError(f"checkpoint data shard missing: {shard_file}")
            blobs[shard] = shard_file.read_bytes()
        blob = blobs[shard]
        if offset + size > len(blob):
            raise _Corrupt(f"variable {name} ends at byte {offset + size} of a "
                           f"{len(blob)}-byte data shard (truncated download?)")
        raw = blob[offset:offset + size]
        tensors[name] = _tensor(name, entry.get(1, 0), _shape(entry.get(2, b"")), raw)
        if 6 in entry and _masked_crc32c_fast(raw) != entry[6]:
            raise _Corrupt(f"variable {name} fails its crc32c check (corrupted data shard)")
    return tensors


def _tensor(name: str, dtype: int, shape: tuple[int, ...], raw: bytes) -> np.ndarray:
    count = int(np.prod(shape, dtype=np.int64))
    if dtype not in _DTYPES:
        raise _Corrupt(f"variable {name} has TensorFlow dtype {dtype} (7: strings, as in TF2 object-based "
                       "checkpoints), which this reader does not decode: only numeric tensors")
    kind = np.dtype(_DTYPES[dtype])
    if len(raw) != count * kind.itemsize:
        raise _Corrupt(f"variable {name} holds {len(raw)} bytes; shape {shape} of {kind} needs "
                       f"{count * kind.itemsize}")
    return np.frombuffer(raw, dtype=kind).reshape(shape).astype(kind.newbyteorder("="))
