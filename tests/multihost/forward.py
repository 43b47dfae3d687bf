"""A TCP forwarder: how the server host offers its loopback-only PostgreSQL to other hosts.

``python -m tests.multihost.forward LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT``
(in production, PostgreSQL itself would listen on the host's address). It probes its clients
with the TCP keepalives the store asks PostgreSQL for (DEAD_CLIENT_PROBES) and closes the
server side of a client gone silent, as PostgreSQL would drop that session itself.
"""

from __future__ import annotations

import asyncio
import socket
import sys

from eraflow.store.postgres import DEAD_CLIENT_PROBES


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:  # reset, or a client whose keepalive probes went unanswered
        pass
    finally:
        writer.close()


async def serve(listen: str, port: int, target: str, target_port: int) -> None:
    async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = writer.get_extra_info("socket")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        client.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, DEAD_CLIENT_PROBES["tcp_keepalives_idle"]
        )
        client.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, DEAD_CLIENT_PROBES["tcp_keepalives_interval"]
        )
        client.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_KEEPCNT, DEAD_CLIENT_PROBES["tcp_keepalives_count"]
        )
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(target, target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(connect, listen, port, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
