"""A JSON batch sink for the reverse-ETL benchmark, in its own process: ``python reverse_etl_sink.py PORT_FILE``.

``POST /records`` takes ``{"records": [...]}`` (what the generic ``http`` destination sends), parses it and
counts the records (each key once per request); ``GET /count`` answers ``{"records": n, "requests": m}``.
HTTP/1.1 keep-alive, so a sequential client reuses one connection, as httpx does. It writes the port it
listens on to PORT_FILE once it accepts connections.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_lock = threading.Lock()
_counts = {"records": 0, "requests": 0}


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: with Nagle on, the client's delayed ACK adds ~40 ms per request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        records = body["records"]
        with _lock:
            _counts["records"] += len({r["key"] for r in records})
            _counts["requests"] += 1
        self._reply({"ok": True})

    def do_GET(self) -> None:
        with _lock:
            self._reply(dict(_counts))


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    Path(sys.argv[1]).write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
