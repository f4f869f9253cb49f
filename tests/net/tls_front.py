"""A TLS front for the sandbox's plain-HTTP port, so botocore talks https:// to it (as to AWS) and a proxy
sees a CONNECT tunnel: each accepted TLS connection is relayed byte for byte to the sandbox."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
from pathlib import Path


class _Relay(socketserver.BaseRequestHandler):
    server: TlsFront

    def handle(self) -> None:
        try:
            tls = self.server.context.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            upstream = socket.create_connection(self.server.upstream, timeout=30)
        except OSError:
            tls.close()
            return

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=pump, args=(upstream, tls), daemon=True)
        back.start()
        pump(tls, upstream)
        back.join(5)
        tls.close()
        upstream.close()


class TlsFront(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: tuple[str, int], cert: Path, key: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.upstream = upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert), str(key))
        self.port = int(self.server_address[1])
        self._thread = threading.Thread(target=self.serve_forever, name="tls-front", daemon=True)

    def start(self) -> TlsFront:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
