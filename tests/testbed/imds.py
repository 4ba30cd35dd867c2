"""An IMDSv2 emulator that behaves like EC2's instance metadata service.

moto's own metadata endpoint does not satisfy the Rust SDK (no TTL header on the token
answer, tokens never checked, credentials JSON without `Code`/`LastUpdated`/`Type`). This one
follows EC2's documented behaviour:

* `PUT /latest/api/token` needs `X-aws-ec2-metadata-token-ttl-seconds` (1..21600) and answers
  with the token and that header; a request carrying `X-Forwarded-For` is refused (403).
* Every other request needs a valid, unexpired `X-aws-ec2-metadata-token` when tokens are
  required (401 otherwise); when tokens are optional, IMDSv1 requests are served too.
* `iam/security-credentials/` lists the role; `iam/security-credentials/<role>` answers the
  full credentials JSON. The credentials are minted by moto's STS (in this process), so they
  work against moto, and rotate `rotate_before` seconds ahead of their expiry like EC2's.
* Fault modes switchable at run time: `down` (connection refused), `slow` (delay), `error500`,
  `throttle` (429), `no_role` (404 on the role listing, as on an instance without a profile),
  `stale` (the credentials document says they expired `STALE_SECONDS` ago, as EC2 can
  during an outage of its credential rotation).

Counters (token PUTs, credential GETs) let tests prove how often a client really called.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

MODES = ("ok", "down", "slow", "error500", "throttle", "no_role", "stale")
STALE_SECONDS = 600
MAX_TOKEN_TTL = 21600
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
INSTANCE_ID = "i-0a1b2c3d4e5f60718"


@dataclass
class MintedCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    issued_at: dt.datetime
    expires_at: dt.datetime


@dataclass
class ImdsState:
    """Everything a test may switch or read; guarded by `lock`."""

    account_id: str
    region: str
    role_name: str = "autoheal-instance-role"
    mode: str = "ok"
    delay_ms: int = 0
    tokens_required: bool = True
    credential_ttl_seconds: int = 6 * 3600
    rotate_before_seconds: int = 45 * 60
    counters: dict = field(default_factory=lambda: {
        "token_puts": 0, "credential_gets": 0, "role_listing_gets": 0, "requests": 0,
    })
    lock: threading.Lock = field(default_factory=threading.Lock)
    tokens: dict = field(default_factory=dict)
    current: MintedCredentials | None = None

    def public_view(self) -> dict:
        with self.lock:
            view = {
                "mode": self.mode,
                "delay_ms": self.delay_ms,
                "tokens_required": self.tokens_required,
                "role_name": self.role_name,
                "credential_ttl_seconds": self.credential_ttl_seconds,
                "rotate_before_seconds": self.rotate_before_seconds,
                "counters": dict(self.counters),
            }
            if self.current:
                view["access_key_id"] = self.current.access_key_id
                view["expiration"] = _iso(self.current.expires_at)
            return view


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class ImdsEmulator:
    """Owns the listener (so `down` can really close it) and the shared state."""

    def __init__(self, state: ImdsState, mint: Callable[[ImdsState], MintedCredentials],
                 host: str = "127.0.0.1", port: int = 0):
        self.state = state
        self.mint = mint
        self.host = host
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # Open client connections: `down` must cut keep-alive connections too, or a client
        # with a pooled connection would still be answered.
        self.connections: set = set()
        self.connections_lock = threading.Lock()

    def start(self) -> None:
        handler = _make_handler(self)
        server = ThreadingHTTPServer((self.host, self.port), handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.connections_lock:
            for connection in list(self.connections):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.connections.clear()

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def configure(self, changes: dict) -> dict:
        """Applies a control request; returns the new public state. Raises ValueError."""
        allowed = {"mode", "delay_ms", "tokens_required", "credential_ttl_seconds",
                   "rotate_before_seconds", "role_name", "rotate_now", "reset_counters"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown keys: {sorted(unknown)}; allowed: {sorted(allowed)}")
        mode = changes.get("mode")
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        with self.state.lock:
            for key in ("delay_ms", "credential_ttl_seconds", "rotate_before_seconds"):
                if key in changes:
                    setattr(self.state, key, int(changes[key]))
            if "tokens_required" in changes:
                self.state.tokens_required = bool(changes["tokens_required"])
            if "role_name" in changes:
                self.state.role_name = str(changes["role_name"])
                self.state.current = None
            if changes.get("rotate_now"):
                self.state.current = None
            if changes.get("reset_counters"):
                for key in self.state.counters:
                    self.state.counters[key] = 0
            previous = self.state.mode
            if mode is not None:
                self.state.mode = mode
        if mode == "down" and previous != "down":
            self.stop()
        elif mode is not None and mode != "down" and previous == "down":
            self.start()
        return self.state.public_view()

    def credentials(self) -> MintedCredentials:
        """The role's current credentials, minted anew once inside the rotation window."""
        with self.state.lock:
            current = self.state.current
            rotate_at = None
            if current is not None:
                rotate_at = current.expires_at - dt.timedelta(seconds=self.state.rotate_before_seconds)
            if current is None or _now() >= rotate_at:
                current = self.mint(self.state)
                self.state.current = current
            return current


def _make_handler(emulator: ImdsEmulator):
    state = emulator.state

    class Handler(BaseHTTPRequestHandler):
        server_version = "EC2ws"
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args) -> None:  # keep test output quiet
            pass

        def setup(self) -> None:
            super().setup()
            with emulator.connections_lock:
                emulator.connections.add(self.connection)

        def finish(self) -> None:
            with emulator.connections_lock:
                emulator.connections.discard(self.connection)
            super().finish()

        def _reply(self, status: int, body: str = "", headers: dict | None = None,
                   content_type: str = "text/plain") -> None:
            payload = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        def _fault(self) -> bool:
            """Applies the current fault mode; True when the request was answered by it."""
            with state.lock:
                state.counters["requests"] += 1
                mode, delay = state.mode, state.delay_ms
            if mode == "down":  # a request that raced the shutdown: hang up, say nothing
                self.close_connection = True
                return True
            if mode == "slow" or delay:
                time.sleep((delay or 5000) / 1000)
            if mode == "error500":
                self._reply(500, "Internal Server Error")
                return True
            if mode == "throttle":
                self._reply(429, "Too Many Requests")
                return True
            return False

        def do_PUT(self) -> None:
            if self._fault():
                return
            if self.path != "/latest/api/token":
                self._reply(404, "Not Found")
                return
            if self.headers.get("X-Forwarded-For"):
                self._reply(403, "Forbidden")
                return
            raw_ttl = self.headers.get(TOKEN_TTL_HEADER)
            try:
                ttl = int(raw_ttl or "")
            except ValueError:
                ttl = 0
            if not 1 <= ttl <= MAX_TOKEN_TTL:
                self._reply(400, "Bad Request")
                return
            token = secrets.token_urlsafe(42)
            with state.lock:
                state.counters["token_puts"] += 1
                now = time.monotonic()
                state.tokens = {t: exp for t, exp in state.tokens.items() if exp > now}
                state.tokens[token] = now + ttl
            self._reply(200, token, {TOKEN_TTL_HEADER: str(ttl)})

        def _token_ok(self) -> bool:
            token = self.headers.get(TOKEN_HEADER)
            with state.lock:
                if token is None:
                    return not state.tokens_required
                expiry = state.tokens.get(token)
                return expiry is not None and expiry > time.monotonic()

        def do_GET(self) -> None:
            if self._fault():
                return
            if not self._token_ok():
                self._reply(401, "Unauthorized")
                return
            path = self.path.split("?", 1)[0]
            listing = "/latest/meta-data/iam/security-credentials/"
            with state.lock:
                no_role = state.mode == "no_role"
                role = state.role_name
            if path == listing:
                with state.lock:
                    state.counters["role_listing_gets"] += 1
                if no_role:
                    self._reply(404, "Not Found")
                else:
                    self._reply(200, role)
                return
            if path.startswith(listing):
                if no_role or path[len(listing):] != role:
                    self._reply(404, "Not Found")
                    return
                with state.lock:
                    state.counters["credential_gets"] += 1
                creds = emulator.credentials()
                with state.lock:
                    stale = state.mode == "stale"
                expiration = _now() - dt.timedelta(seconds=STALE_SECONDS) if stale else creds.expires_at
                doc = {
                    "Code": "Success",
                    "LastUpdated": _iso(creds.issued_at),
                    "Type": "AWS-HMAC",
                    "AccessKeyId": creds.access_key_id,
                    "SecretAccessKey": creds.secret_access_key,
                    "Token": creds.session_token,
                    "Expiration": _iso(expiration),
                }
                self._reply(200, json.dumps(doc, indent=2))
                return
            if path == "/latest/meta-data/iam/info":
                if no_role:
                    self._reply(404, "Not Found")
                    return
                doc = {
                    "Code": "Success",
                    "LastUpdated": _iso(_now()),
                    "InstanceProfileArn": f"arn:aws:iam::{state.account_id}:instance-profile/{role}",
                    "InstanceProfileId": "AIPAEXAMPLEPROFILEID",
                }
                self._reply(200, json.dumps(doc, indent=2))
                return
            simple = {
                "/latest/meta-data/instance-id": INSTANCE_ID,
                "/latest/meta-data/placement/region": state.region,
                "/latest/meta-data/placement/availability-zone": f"{state.region}a",
                "/latest/meta-data/local-hostname": "ip-10-0-0-10.ec2.internal",
            }
            if path in simple:
                self._reply(200, simple[path])
                return
            if path == "/latest/dynamic/instance-identity/document":
                doc = {"accountId": state.account_id, "region": state.region,
                       "instanceId": INSTANCE_ID, "availabilityZone": f"{state.region}a"}
                self._reply(200, json.dumps(doc, indent=2), content_type="application/json")
                return
            self._reply(404, "Not Found")

    return Handler
