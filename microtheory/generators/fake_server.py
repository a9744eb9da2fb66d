"""An in-process OpenAI-compatible HTTP server for tests: scripted faults, no model.

    with FakeOpenAIServer(reply=lambda prompt, i: "1. a b c\\n2. d e f") as srv:
        gen = OpenAIGenerator(srv.base_url, "fake")

`faults` is a queue consumed one request at a time: "503", "429", "400", "malformed" (200 with
non-JSON), "no-choices", "empty" (a choice with empty content), "slow" (sleeps `slow_seconds`
before answering), "drop" (closes the connection without an answer); when it is empty the server
answers normally. `honour_n=False` imitates llama.cpp's server, which returns one choice whatever
`n` asks. `stop()` shuts it down mid-run (a dead server); `start()` brings it back on the same port.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAIServer:
    def __init__(self, reply: Callable[[str, int], str] | None = None, *, model: str = "fake-model",
                 honour_n: bool = True, slow_seconds: float = 2.0, port: int = 0):
        self.reply = reply or (lambda prompt, i: f"1. The first premise number {i}.\n2. The second premise here.")
        self.model, self.honour_n, self.slow_seconds = model, honour_n, slow_seconds
        self.faults: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _fault(self) -> str | None:
                with srv._lock:
                    return srv.faults.pop(0) if srv.faults else None

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": [{"id": srv.model}]}).encode())
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with srv._lock:
                    srv.requests.append(body)
                    srv.headers.append(dict(self.headers))
                fault = self._fault()
                if fault == "slow":
                    time.sleep(srv.slow_seconds)
                    fault = None
                if fault == "drop":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if fault in ("503", "429", "400"):
                    self._send(int(fault), json.dumps({"error": {"message": f"scripted {fault}"}}).encode())
                    return
                if fault == "malformed":
                    self._send(200, b"<html>not json</html>", "text/html")
                    return
                if fault == "no-choices":
                    self._send(200, json.dumps({"id": "x", "object": "chat.completion"}).encode())
                    return
                chat = self.path.rstrip("/").endswith("/chat/completions")
                if not chat and not self.path.rstrip("/").endswith("/completions"):
                    self._send(404, b'{"error": "unknown endpoint"}')
                    return
                prompt = body["messages"][-1]["content"] if chat else body.get("prompt", "")
                n = int(body.get("n", 1)) if srv.honour_n else 1
                seed = int(body.get("seed", 0) or 0)
                texts = ["" if fault == "empty" else srv.reply(prompt, seed + i) for i in range(n)]
                choices = [{"index": i, "finish_reason": "stop",
                            **({"message": {"role": "assistant", "content": t}} if chat else {"text": t})}
                           for i, t in enumerate(texts)]
                self._send(200, json.dumps({"id": "x", "object": "chat.completion" if chat else "text_completion",
                                            "model": srv.model, "choices": choices}).encode())

        return Handler

    def start(self) -> FakeOpenAIServer:
        ThreadingHTTPServer.allow_reuse_address = True
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler())
        self._httpd.daemon_threads = True
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
