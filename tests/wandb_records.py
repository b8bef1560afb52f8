"""Reading back what an offline W&B run wrote: the records of its ``run-*.wandb`` file.

wandb >= 0.19 has no Python reader of these files (its core is in Go), so this reads the
format directly: a 7-byte header (``:W&B``, a 2-byte magic, a version byte), then
LevelDB-log style chunks in 32 KiB blocks, each with a 7-byte header (CRC32, little-endian
2-byte length, type: 1 full, 2 first, 3 middle, 4 last); a record is one protobuf
``Record`` of ``wandb.proto.wandb_internal_pb2``.
"""

from __future__ import annotations

import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

FILE_HEADER = 7
BLOCK = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> list[bytes]:
    """The records' bytes, chunks joined."""
    assert data[:4] == b":W&B", "not a W&B transaction log"
    payloads, pending, offset = [], b"", FILE_HEADER
    while offset + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - offset % BLOCK
        if left_in_block < CHUNK_HEADER:  # the block's tail is padding
            offset += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[offset : offset + CHUNK_HEADER])
        chunk = data[offset + CHUNK_HEADER : offset + CHUNK_HEADER + length]
        offset += CHUNK_HEADER + length
        if kind == 0 and length == 0:  # zero padding at the end
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            payloads.append(pending)
            pending = b""
    return payloads


def records(path: Path) -> list[wandb_internal_pb2.Record]:
    """Every record of the offline run file ``path``, in order. W&B's service process writes
    the file and may still be writing its last records after ``run.finish()`` returns (an
    artifact was missing once in three runs on a busy machine): this process's W&B is torn
    down first, which waits for the service to finish writing (a no-op when none runs)."""
    import wandb

    wandb.teardown()
    parsed = []
    for payload in _payloads(path.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        parsed.append(record)
    return parsed


def artifacts(run_folder: Path) -> list[wandb_internal_pb2.ArtifactRecord]:
    """The artifacts logged by the offline run in ``run_folder`` (``offline-run-*``)."""
    (path,) = run_folder.glob("*.wandb")
    return [r.artifact for r in records(path) if r.WhichOneof("record_type") == "artifact"]
