"""In-process cost of the dispatch path: one JSON-RPC frame in, reply bytes out, no socket.

Builds the real ``llm-config:*`` channels over a SQLite store of 50 configs and times
``Dispatcher.handle_frame`` for a read, a list of 50 and a malformed frame, and
``Dispatcher.answer_inline`` (the path the connection takes for a read) for the read, in
microseconds per frame (median of ``--repeats`` runs of ``--count`` frames, with the
spread). This is the part of a request that bridge adds over a raw WebSocket echo; the
transport figures are in ``run.py``.

Run: ``.venv/bin/python benchmarks/dispatch_cost.py [--repeats N] [--count N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import orjson
from core_baseline import seed

from bridge import api
from bridge.rpc.dispatch import Dispatcher
from bridge.service import LlmConfigService, register_llm_config_channels
from bridge.storage import SqliteConfigStore


async def measure(repeats: int, count: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        cipher = await seed(data_dir, 50)
        store = SqliteConfigStore(data_dir / "bridge.db")
        await store.open()
        service = LlmConfigService(store, cipher, watch=False)
        registry = api.Registry()
        register_llm_config_channels(registry, service)
        dispatcher = Dispatcher(registry)
        ids = [view.id for view in await service.list()]
        frames = {
            "read": orjson.dumps(
                {"jsonrpc": "2.0", "id": 7, "method": "llm-config:read", "params": {"id": ids[25]}}
            ).decode(),
            "list (50)": '{"jsonrpc":"2.0","id":8,"method":"llm-config:list"}',
            "unknown channel": '{"jsonrpc":"2.0","id":9,"method":"nope:nope","params":{}}',
        }
        read = frames["read"]
        for frame in frames.values():  # warm every path, check it answers
            assert await dispatcher.handle_frame(frame) is not None
        answered, reply = dispatcher.answer_inline(read)
        assert answered
        assert reply == await dispatcher.handle_frame(read)
        out: dict[str, list[float]] = {name: [] for name in frames}
        out["read, answer_inline"] = []
        for _ in range(repeats):
            for name, frame in frames.items():
                n = count // 10 if name.startswith("list") else count
                handle = dispatcher.handle_frame
                start = time.perf_counter_ns()
                for _ in range(n):
                    await handle(frame)
                out[name].append((time.perf_counter_ns() - start) / n / 1000)
            answer = dispatcher.answer_inline
            start = time.perf_counter_ns()
            for _ in range(count):
                answer(read)
            out["read, answer_inline"].append((time.perf_counter_ns() - start) / count / 1000)
        await service.close()
        await store.close()
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--count", type=int, default=20000)
    args = parser.parse_args()
    results = asyncio.run(measure(args.repeats, args.count))
    for name, values in results.items():
        low, high = min(values), max(values)
        print(
            f"{name:>20}: {statistics.median(values):6.2f} µs/frame ({low:.2f}–{high:.2f}, n={len(values)})"
        )


if __name__ == "__main__":
    main()
