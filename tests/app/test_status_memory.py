"""The status file's memory rows: the run pool, and each connection's arena and pool use."""

from __future__ import annotations

from core import BufferPool, FrameBuilder, RunPool
from tunnel.app.status import ArenaCounters, StatusSnapshot, memory_row, render_status
from tunnel.io.driver import DriverStats
from tunnel.protocol.memory import ConnectionMemory, IterationArenas
from tunnel.protocol.traffic import Traffic


def _snapshot(
    memory: ConnectionMemory, clients: bool = True
) -> tuple[StatusSnapshot, BufferPool]:
    builder = FrameBuilder()
    builder.reserve("hdr", headroom=24)
    pool = BufferPool(builder.finalize(), 4)
    runs = RunPool(65536, 2)
    runs.acquire()
    return StatusSnapshot(
        title="t", now=1_700_000_000.0, traffic=Traffic(), pool=pool.stats,
        arena=ArenaCounters(0, 0, 0, 0), link=DriverStats(), clients=[] if clients else None,
        runs=runs.stats, run_block=runs.block_size,
        memory=[memory_row("alice", ("192.0.2.7", 5000), 3, memory)] if clients else [],
    ), pool


def test_per_connection_rows_follow_the_arena() -> None:
    memory = ConnectionMemory()
    iteration = IterationArenas()
    snapshot, pool = _snapshot(memory)
    iteration.pool = pool
    for _ in range(3):
        buf = iteration.take(memory)
        assert buf is not None
        iteration.end()
    kept = iteration.take(memory)
    assert kept is not None
    memory.arena.detach(kept)
    iteration.end()
    snapshot, _ = _snapshot(memory)
    text = render_status(snapshot, 2)
    row = next(line for line in text.splitlines() if line.startswith("CLIENT_MEMORY,"))
    assert row == (f"CLIENT_MEMORY,alice,192.0.2.7:5000,3,4,3,{3 * pool.frame.buffer_size},"
                   "1,0,4")
    assert "HEADER,CLIENT_MEMORY,Common Name," in text
    runs = next(line for line in text.splitlines() if line.startswith("RUN_POOL_STATS,"))
    assert runs == "RUN_POOL_STATS,2,1,1,65536,0"
    v1 = render_status(snapshot, 1)
    assert "Client memory,alice,192.0.2.7:5000,iterations=4," in v1
    assert "Run pool in use,1" in v1
    # stock's rows only (management `status`): none of ours
    assert "CLIENT_MEMORY" not in render_status(snapshot, 2, extras=False)


def test_a_client_status_has_no_connection_rows() -> None:
    snapshot, _ = _snapshot(ConnectionMemory(), clients=False)
    assert "CLIENT_MEMORY" not in render_status(snapshot, 2)


def test_workers_carry_the_memory_rows_to_the_supervisor() -> None:
    import json

    from tunnel.app.worker_ipc import merge_snapshots, snapshot_from_json, snapshot_to_json

    memory = ConnectionMemory()
    memory.iterations = 5
    snapshot, _ = _snapshot(memory)
    parts = [snapshot_from_json(json.loads(json.dumps(snapshot_to_json(snapshot, w))))
             for w in (0, 1)]
    assert parts[0].memory == snapshot.memory and parts[0].runs == snapshot.runs
    merged = merge_snapshots("t", 1.0, parts)
    assert merged.runs is not None and merged.runs.size == 4 and merged.runs.in_use == 2
    assert len(merged.memory) == 2 and merged.memory[0].iterations == 5
    text = render_status(merged, 2)
    assert "RUN_POOL_STATS,4,2," in text and text.count("\nCLIENT_MEMORY,alice,") == 2
