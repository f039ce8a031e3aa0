"""A scripted HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions and the
Anthropic messages wire formats (JSON and server-sent events), so the real SDK clients
can be tested without the internet. Each request takes the next step of the script and
is recorded (path, headers, JSON body)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Step:
    status: int = 200
    body: Any = None  # JSON body (non-streaming)
    events: list[tuple[str | None, Any]] | None = None  # SSE (event name, data)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # before answering
    break_after: int | None = None  # SSE: drop the connection after this many events
    # SSE endings the SDKs take for a whole stream (issue 12): a complete chunked body
    # after this many events (``end_after``), or an unframed body (no length, no chunks)
    # whose connection closes cleanly after this many events (``close_after``).
    end_after: int | None = None
    close_after: int | None = None


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


def openai_ok(text: str = "hello", prompt_tokens: int = 5, completion_tokens: int = 2) -> Step:
    return Step(
        body={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-test",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def openai_stream(
    chunks: list[str],
    usage: tuple[int, int] = (5, 2),
    fail: tuple[str, str] | None = None,
    **kw: Any,
) -> Step:
    """A chat-completions stream; ``fail=(type, message)`` ends it after the chunks with an
    in-band error (``data: {"error": ...}``) under the 200 status already sent."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "gpt-test",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events: list[tuple[str | None, Any]] = [(None, chunk({"role": "assistant", "content": ""}))]
    events += [(None, chunk({"content": c})) for c in chunks]
    if fail is not None:
        events.append((None, {"error": {"type": fail[0], "message": fail[1], "code": None}}))
        return Step(events=events, **kw)
    events.append((None, chunk({}, "stop")))
    final = chunk({})
    final["choices"] = []
    final["usage"] = {
        "prompt_tokens": usage[0],
        "completion_tokens": usage[1],
        "total_tokens": sum(usage),
    }
    events.append((None, final))
    events.append((None, "[DONE]"))
    return Step(events=events, **kw)


def openai_error(status: int, message: str, code: str | None = None, **kw: Any) -> Step:
    err = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return Step(status=status, body={"error": err}, **kw)


def anthropic_ok(text: str = "hello", input_tokens: int = 5, output_tokens: int = 2) -> Step:
    return Step(
        body={
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }
    )


def anthropic_stream(
    chunks: list[str],
    usage: tuple[int, int] = (5, 2),
    fail: tuple[str, str] | None = None,
    **kw: Any,
) -> Step:
    """A messages stream; ``fail=(type, message)`` ends it after the chunks with an
    ``event: error`` (``overloaded_error``, ...) under the 200 status already sent."""
    msg = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": 0},
    }
    events: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": msg}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    for c in chunks:
        delta = {"type": "text_delta", "text": c}
        events.append(
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        )
    if fail is not None:
        err = {"type": "error", "error": {"type": fail[0], "message": fail[1]}}
        events.append(("error", err))
        return Step(events=events, **kw)
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": usage[1]},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return Step(events=events, **kw)


def anthropic_error(
    status: int, message: str, kind: str = "invalid_request_error", **kw: Any
) -> Step:
    return Step(
        status=status, body={"type": "error", "error": {"type": kind, "message": message}}, **kw
    )


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients dropping keep-alive connections (a closed event loop, a timeout) are
        # routine here; anything else is printed as usual.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class ProviderServer:
    """``with ProviderServer() as srv:`` then ``srv.script("/v1/chat/completions", ...)``."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._script: dict[str, list[Step]] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                path = self.path.split("?")[0]
                step = server._take(
                    Seen(path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                if step.delay:
                    time.sleep(step.delay)
                try:
                    if step.events is None:
                        self._json(step)
                    else:
                        self._sse(step)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def _json(self, step: Step) -> None:
                data = json.dumps(step.body).encode()
                self.send_response(step.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in step.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _sse(self, step: Step) -> None:
                # Chunked, so a stream cut midway is a broken body, not a clean EOF; or
                # unframed, where a clean close is the body's end.
                framed = step.close_after is None
                self.send_response(step.status)
                self.send_header("content-type", "text/event-stream")
                if framed:
                    self.send_header("transfer-encoding", "chunked")
                else:
                    self.send_header("connection", "close")
                for k, v in step.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                assert step.events is not None
                for i, (name, data) in enumerate(step.events):
                    if step.break_after is not None and i >= step.break_after:
                        self.wfile.flush()
                        self.close_connection = True
                        return  # drop the connection midway: no terminating chunk
                    if step.end_after is not None and i >= step.end_after:
                        break  # a whole body that leaves the last events out
                    if step.close_after is not None and i >= step.close_after:
                        break
                    payload = data if isinstance(data, str) else json.dumps(data)
                    head = f"event: {name}\n" if name else ""
                    chunk = f"{head}data: {payload}\n\n".encode()
                    if framed:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    else:
                        self.wfile.write(chunk)
                    self.wfile.flush()
                if framed:
                    self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                if not framed:
                    self.close_connection = True

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        # A short poll, so shutdown() at the end of each test takes milliseconds, not 0.5 s.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def script(self, path: str, *steps: Step) -> None:
        """Queues steps for ``path``; the last one left repeats."""
        with self._lock:
            self._script.setdefault(path, []).extend(steps)

    def replace(self, path: str, *steps: Step) -> None:
        with self._lock:
            self._script[path] = list(steps)

    def _take(self, seen: Seen) -> Step:
        with self._lock:
            self.seen.append(seen)
            queue = self._script.get(seen.path) or []
            if not queue:
                return Step(status=500, body={"error": {"message": f"no script for {seen.path}"}})
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def requests(self, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if path is None or s.path == path]

    def __enter__(self) -> ProviderServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def iter_bodies(seen: list[Seen]) -> Iterator[Any]:
    for s in seen:
        yield s.body
