"""Any OpenAI-compatible server: vLLM, llama.cpp's server, Ollama, hosted APIs.

Speaks `/v1/chat/completions` (default; the server applies the model's chat template) or
`/v1/completions` (raw text). Standard library HTTP only (urllib), so the backend needs no extra
package. Anything but a transient fault, and an answer that is not the documented JSON, is a
GeneratorError saying what the server did.

Faults, and why the defaults end within a minute against a dead or hanging server:
- every attempt has a time-out (`timeout`), and one request with all its retries a budget
  (`request_budget`);
- connection errors, time-outs, HTTP 429 and 5xx are retried with exponential backoff and full
  jitter (a random wait up to backoff * 2**attempt, capped), so clients do not retry in lockstep;
- a circuit breaker counts failed attempts across requests: after `breaker` in a row, or when
  the server has not answered for `breaker_seconds`, it raises `ServerUnavailable`
  (`stop_run = True`): the caller stops the whole run (populate saves what is done, and a rerun
  goes on) instead of failing every remaining question one time-out at a time.
"""
from __future__ import annotations

import http.client
import json
import random
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, fields, replace
from typing import Any

from microtheory.generators.base import BaseGenerator, SamplingParams, env_default
from core.errors import GeneratorError, InputError

ENV_BASE_URL = "MICROTHEORY_OPENAI_BASE_URL"
ENV_MODEL = "MICROTHEORY_OPENAI_MODEL"
ENV_API_KEY = "OPENAI_API_KEY"
ENDPOINTS = ("chat", "completions")


class _Retryable(Exception):
    """A failure worth another try (the server may come back or was only busy)."""


class ServerUnavailable(GeneratorError):
    """The circuit breaker is open: the server failed so often in a row that the run should stop."""

    stop_run = True


@dataclass(frozen=True)
class FaultPolicy:
    """Time-outs, retries and the circuit breaker (see the module doc). The defaults stop a run
    against a dead server in seconds and against a silent one in about `breaker_seconds`."""

    timeout: float = 30.0          # seconds one attempt may take
    retries: int = 3               # further attempts per request
    backoff: float = 0.5           # the first retry waits up to this (random), each later one up to twice as long
    max_backoff: float = 8.0
    request_budget: float = 60.0   # seconds one request may take, all attempts together
    breaker: int = 4               # failed attempts in a row (any request) that stop the run; 0: never
    breaker_seconds: float = 45.0  # ...or seconds without an answer

    def __post_init__(self) -> None:
        if min(self.timeout, self.request_budget, self.breaker_seconds) <= 0:
            raise InputError("timeout, request budget and breaker seconds must be > 0")
        if min(self.retries, self.backoff, self.max_backoff, self.breaker) < 0:
            raise InputError("retries, backoff and breaker must be >= 0")


class OpenAIGenerator(BaseGenerator):
    """Generate through an OpenAI-compatible HTTP endpoint.

    `base_url` ends in `/v1` (e.g. http://127.0.0.1:8080/v1); `model` None asks the server's
    `/models` for its first model (a llama.cpp or vLLM server serves one). A server that ignores
    `n` (llama.cpp returns one choice) is asked again, with seed + i, until n candidates are in.
    Faults follow `policy`; its fields may also be given one by one (`timeout=5, retries=1`).
    """

    def __init__(self, base_url: str | None = None, model: str | None = None, *, api_key: str | None = None,
                 endpoint: str = "chat", system: str | None = None, name: str | None = None,
                 policy: FaultPolicy | None = None, **faults: Any):
        super().__init__()
        url = base_url or env_default(ENV_BASE_URL)
        if not url:
            raise InputError(f"no server URL for the openai generator: give openai:http://HOST:PORT/v1#MODEL "
                             f"or set ${ENV_BASE_URL}")
        if not url.startswith(("http://", "https://")):
            raise InputError(f"server URL {url!r} must start with http:// or https://")
        if endpoint not in ENDPOINTS:
            raise InputError(f"endpoint must be one of {', '.join(ENDPOINTS)}, got {endpoint!r}")
        unknown = set(faults) - {f.name for f in fields(FaultPolicy)}
        if unknown:
            raise InputError(f"unknown openai generator option(s) {', '.join(sorted(unknown))}")
        self.policy = replace(policy or FaultPolicy(), **faults)
        self.base_url = url.rstrip("/")
        self._model = model or env_default(ENV_MODEL)
        self.api_key = api_key if api_key is not None else env_default(ENV_API_KEY)
        self.endpoint = endpoint
        self.system = system
        self._failed_in_row = 0                   # failed attempts since the last answer (any request)
        self._failing_since: float | None = None  # when that run of failures began
        self._last_failure = 0.0
        self._honours_n: bool | None = None
        self.name = name or f"openai:{self.base_url}#{self._model or '?'}"

    # ------------------------------------------------------------------ HTTP

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def _once(self, method: str, path: str, body: dict[str, Any] | None, timeout: float | None = None) -> Any:
        url = self.base_url + path
        data = json.dumps(body).encode("utf-8") if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers=self._headers())
        timeout = self.policy.timeout if timeout is None else timeout
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = _snippet(e.read() if e.fp is not None else b"")
            if e.code == 429 or e.code >= 500:
                raise _Retryable(f"HTTP {e.code} from {url}: {detail}") from None
            hint = " (check that the base URL ends in /v1 and the model name is one the server serves)" \
                if e.code in (400, 404, 422) else ""
            raise GeneratorError(f"the generator server rejected the request: HTTP {e.code} from {url}: "
                                 f"{detail}{hint}") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise _Retryable(f"no answer from {url} within {timeout:g} s") from None
            # "connection refused", not "[Errno 111] Connection refused": the user's words, not Python's
            why = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
            raise _Retryable(f"cannot connect to {url}: {why.lower()}") from None
        except TimeoutError:
            raise _Retryable(f"no answer from {url} within {timeout:g} s") from None
        except (http.client.HTTPException, ConnectionError, OSError) as e:
            # The server closed the connection mid-answer (e.g. it was stopped).
            raise _Retryable(f"connection to {url} broke: {type(e).__name__}: {e}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise GeneratorError(f"malformed answer from {url}: not JSON: {_snippet(raw)}") from None

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request: attempts with time-outs within `request_budget`, jittered exponential backoff
        between them, and the circuit breaker (see the module doc) around all of it."""
        last = ""
        t0 = time.monotonic()
        attempts = 0
        try:
            for attempt in range(self.policy.retries + 1):
                timeout = self._attempt_timeout(t0, last)
                if timeout is None:
                    break
                attempts += 1
                self.stats.calls += 1
                started = time.monotonic()
                try:
                    answer = self._once(method, path, body, timeout)
                except _Retryable as e:
                    last = str(e)
                    self._note_failure(last, started)
                    if attempt < self.policy.retries:
                        self.stats.retries += 1
                        wait = random.uniform(0, min(self.policy.backoff * (2 ** attempt), self.policy.max_backoff))
                        time.sleep(min(wait, max(0.0, self.policy.request_budget - (time.monotonic() - t0))))
                    continue
                except GeneratorError:
                    self.stats.failures += 1
                    raise
                self._failed_in_row, self._failing_since = 0, None
                return answer
            self.stats.failures += 1
            raise GeneratorError(f"generator server at {self.base_url} failed after {attempts} attempts: "
                                 f"{last or 'request budget spent'} ({time.monotonic() - t0:.0f} s). Is it running? "
                                 "(e.g. python -m llama_cpp.server --model FILE.gguf --host 127.0.0.1 --port 8080)")
        finally:
            self.stats.seconds += time.monotonic() - t0

    def _attempt_timeout(self, t0: float, last: str) -> float | None:
        """This attempt's time-out: the smallest of `timeout`, what is left of the request budget and
        what is left before the breaker's time limit. None when the request budget is spent; the
        breaker opens (ServerUnavailable) when its time is."""
        now = time.monotonic()
        left = [self.policy.timeout, self.policy.request_budget - (now - t0)]
        if self._failing_since is not None and now - self._last_failure > self.policy.max_backoff + 1.0:
            self._failing_since = now  # a pause without requests (the caller was busy) is not server silence
        if self.policy.breaker and self._failing_since is not None:
            breaker_left = self.policy.breaker_seconds - (now - self._failing_since)
            if breaker_left <= 0.05:
                self._open_breaker(last)
            left.append(breaker_left)
        t = min(left)
        return t if t > 0.05 else None

    def _note_failure(self, why: str, started: float) -> None:
        """Count a failed attempt (begun at `started`); open the breaker when the server is clearly gone."""
        self._failed_in_row += 1
        self._last_failure = time.monotonic()
        if self._failing_since is None:
            self._failing_since = started
        if not self.policy.breaker:
            return
        silent = time.monotonic() - self._failing_since
        if self._failed_in_row >= self.policy.breaker or silent >= self.policy.breaker_seconds - 0.05:
            self._open_breaker(why)

    def _open_breaker(self, why: str) -> None:
        silent = time.monotonic() - (self._failing_since or time.monotonic())
        self.stats.failures += 1
        raise ServerUnavailable(
            f"the generator server at {self.base_url} failed {self._failed_in_row} times in a row over "
            f"{silent:.0f} s (last: {why}); stopping the run. Start or fix the server (e.g. python -m "
            "llama_cpp.server --model FILE.gguf --host 127.0.0.1 --port 8080) and rerun.")

    @property
    def model(self) -> str:
        """The model name sent with each request; asked of the server once when not given."""
        if self._model is None:
            answer = self._request("GET", "/models")
            try:
                self._model = str(answer["data"][0]["id"])
            except (KeyError, IndexError, TypeError):
                raise GeneratorError(f"{self.base_url}/models lists no model; give one as "
                                     f"openai:URL#MODEL or ${ENV_MODEL}") from None
            self.name = f"openai:{self.base_url}#{self._model}"
        return self._model

    # ------------------------------------------------------------------ generation

    def _body(self, prompt: str, n: int, params: SamplingParams) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.model, "temperature": params.temperature, "top_p": params.top_p,
                                "max_tokens": params.max_tokens, "n": n}
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        if self.endpoint == "chat":
            messages = ([{"role": "system", "content": self.system}] if self.system else []) + \
                [{"role": "user", "content": prompt}]
            body["messages"] = messages
            return "/chat/completions", body
        body["prompt"] = prompt
        return "/completions", body

    def _texts(self, answer: Any, path: str) -> list[str]:
        where = self.base_url + path
        if not isinstance(answer, dict):
            raise GeneratorError(f"malformed answer from {where}: expected a JSON object, got {type(answer).__name__}")
        if "error" in answer and "choices" not in answer:
            raise GeneratorError(f"the generator server at {where} reported an error: {_snippet(answer['error'])}")
        choices = answer.get("choices")
        if not isinstance(choices, list):
            raise GeneratorError(f"malformed answer from {where}: no 'choices' list in {_snippet(answer)}")
        out = []
        for c in choices:
            try:
                text = c["message"]["content"] if self.endpoint == "chat" else c["text"]
            except (KeyError, TypeError):
                raise GeneratorError(f"malformed answer from {where}: a choice without "
                                     f"{'message.content' if self.endpoint == 'chat' else 'text'}: "
                                     f"{_snippet(c)}") from None
            if text is None:
                text = ""
            if not isinstance(text, str):
                raise GeneratorError(f"malformed answer from {where}: choice text is {type(text).__name__}")
            out.append(text)
        return out

    def _generate_one(self, prompt: str, n: int, params: SamplingParams) -> list[str]:
        out: list[str] = []
        # Bounded: a server that returns no choices at all must not loop forever.
        for _ in range(n):
            want = n - len(out)
            ask = want if self._honours_n is not False else 1
            path, body = self._body(prompt, ask, params.for_sample(len(out)))
            texts = self._texts(self._request("POST", path, body), path)
            if ask > 1 and self._honours_n is None:
                self._honours_n = len(texts) >= ask
            out.extend(texts[:want])
            if len(out) >= n:
                break
        return out

    def health(self) -> bool:
        """Whether the server answers `/models` now (one attempt, no retries)."""
        try:
            self._once("GET", "/models", None)
            return True
        except (_Retryable, GeneratorError):
            return False


def _snippet(x: Any, limit: int = 200) -> str:
    if isinstance(x, bytes):
        x = x.decode("utf-8", errors="replace")
    elif not isinstance(x, str):
        x = json.dumps(x, default=str)
    x = " ".join(x.split())
    return x if len(x) <= limit else x[:limit] + "..."


__all__ = ["ENV_API_KEY", "ENV_BASE_URL", "ENV_MODEL", "FaultPolicy", "OpenAIGenerator", "ServerUnavailable"]
