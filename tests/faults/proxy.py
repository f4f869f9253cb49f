"""A TCP proxy on 127.0.0.1 that the test controls, to partition an agent from the control plane.

`hold()` black-holes both directions: nothing is forwarded, nothing is refused, connections stay open (the
way a dropped route or a stalled NAT looks to both ends). `heal()` lets the held bytes through, late: a
request sent during the partition reaches the server only after it. `drop()` resets every connection.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType


class PartitionProxy:
    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self._loop = asyncio.new_event_loop()
        self._open = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="partition-proxy", daemon=True)
        self.address = ""
        self.held_bytes = 0  # a lower bound: bytes beyond the first chunk wait in the kernel buffers
        self.connections = 0

    def start(self) -> PartitionProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._open.set()
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True)
        self._writers -= {writer, up_writer}

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if not self._open.is_set():
                    self.held_bytes += len(data)
                    await self._open.wait()
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()

    def _call(self, fn: object) -> None:
        self._loop.call_soon_threadsafe(fn)  # type: ignore[arg-type]

    def hold(self) -> None:
        self._call(self._open.clear)

    def heal(self) -> None:
        self._call(self._open.set)

    def drop(self) -> None:
        def reset() -> None:
            for writer in list(self._writers):
                writer.transport.abort()

        self._call(reset)

    def stop(self) -> None:
        def shutdown() -> None:
            self._open.set()
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            self._loop.call_later(0.2, self._loop.stop)

        self._call(shutdown)
        self._thread.join(timeout=10)

    def __enter__(self) -> PartitionProxy:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()
