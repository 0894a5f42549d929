"""Parquet parsed from bytes already read and verified (a stored output, an embedding-cache shard)."""

import pyarrow as pa
import pyarrow.parquet as pq


def parquet_table(data: bytes, columns: list[str] | None = None) -> pa.Table:
    """Parse parquet bytes from a copy in Arrow's own memory. Arrow's reader threads can drop their last reference to
    the input after the interpreter has begun to exit; releasing a Python-owned buffer there needs the GIL, and the
    thread is killed while unwinding C++ code: the process aborts ("terminate called without an active exception")."""
    owned = pa.allocate_buffer(len(data))
    memoryview(owned).cast("B")[:] = data
    return pq.read_table(pa.BufferReader(owned), columns=columns)
