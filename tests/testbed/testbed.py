"""The local AWS test bed: moto behind the CBOR front, plus the IMDSv2 emulator, in one process.

    python testbed.py [--host 127.0.0.1] [--port 0] [--imds-port 0] [--state-file F]
                      [--seed [--seed-account ID]... [--seed-region R]...]

Ports default to 0 (the kernel picks free ones). When both listeners are up (and the world
is seeded, with --seed) it prints one JSON line on stdout and writes the same to --state-file:

    {"ready": true, "endpoint": "http://127.0.0.1:PORT", "imds_endpoint": "http://127.0.0.1:PORT",
     "account_id": "123456789012", "pid": 1234}

`endpoint` serves every AWS service (moto routes by the signing service name; CloudWatch's
RPC v2 CBOR is translated). Test-only control routes live on the same port:
  GET  /_testbed/health           -> 200
  GET  /_testbed/imds             -> the IMDS emulator's mode and counters
  POST /_testbed/imds {..}        -> switch mode/delay/tokens/ttl, rotate, reset counters
  GET/DELETE /_testbed/calls      -> the AWS actions received so far (IAM names) / clear them
  POST /_testbed/role {..}        -> create or update an IAM role: {"account", "name",
                                     "trust": {policy}, "policy": {inline policy}} (in-process,
                                     so it works while moto enforces permissions)
It runs until SIGTERM/SIGINT, or until stdin closes when --exit-on-stdin-eof is given (so
a test process that dies cannot leave it behind).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import threading

# moto reads these at import time.
os.environ.setdefault("MOTO_ECS_SERVICE_RUNNING", "2")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testbed")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testbed")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.sts.models import sts_backends  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from cbor_front import CborFront  # noqa: E402
from gaps import MotoGaps  # noqa: E402
from imds import ImdsEmulator, ImdsState, MintedCredentials  # noqa: E402
from recorder import CallRecorder  # noqa: E402


def mint_instance_credentials(state: ImdsState) -> MintedCredentials:
    """Asks moto's STS (in this process) for role credentials, as EC2 does for a profile."""
    role_arn = f"arn:aws:iam::{state.account_id}:role/{state.role_name}"
    backend = sts_backends[state.account_id]["aws"]
    assumed = backend.assume_role(
        region_name=state.region,
        role_session_name="i-0a1b2c3d4e5f60718",
        role_arn=role_arn,
        policy=None,
        duration=state.credential_ttl_seconds,
        external_id=None,
    )
    now = dt.datetime.now(dt.timezone.utc)
    return MintedCredentials(
        access_key_id=assumed.access_key_id,
        secret_access_key=assumed.secret_access_key,
        session_token=assumed.session_token,
        issued_at=now,
        expires_at=now + dt.timedelta(seconds=state.credential_ttl_seconds),
    )


def put_role(spec: dict) -> dict:
    """Creates (or updates) a role with a trust policy and one inline policy, in any account."""
    from moto.iam.exceptions import NotFoundException
    from moto.iam.models import iam_backends

    unknown = set(spec) - {"account", "name", "trust", "policy"}
    if unknown or "name" not in spec:
        raise ValueError(f"expected keys account, name, trust, policy; unknown: {sorted(unknown)}")
    backend = iam_backends[spec.get("account", DEFAULT_ACCOUNT_ID)]["aws"]
    name = spec["name"]
    trust = json.dumps(spec.get("trust") or {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                       "Action": "sts:AssumeRole"}],
    })
    try:
        backend.get_role(name)
        backend.update_assume_role_policy(name, trust)
    except NotFoundException:
        backend.create_role(name, trust, "/", None, "", [], None)
    if spec.get("policy") is not None:
        backend.put_role_policy(name, "testbed", json.dumps(spec["policy"]))
    return {"arn": backend.get_role(name).arn}


def read_json_object(environ) -> dict:
    """The request body as a JSON object; ValueError (a 400) otherwise."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    document = json.loads(environ["wsgi.input"].read(length) or b"{}")
    if not isinstance(document, dict):
        raise ValueError("body must be a JSON object")
    return document


def control_app(imds: ImdsEmulator):
    """The /_testbed/ routes: health and the IMDS emulator's switches."""

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")

        def reply(status: str, doc: dict):
            body = json.dumps(doc).encode()
            start_response(status, [("Content-Type", "application/json"),
                                    ("Content-Length", str(len(body)))])
            return [body]

        if path == "/_testbed/health":
            return reply("200 OK", {"ok": True})
        if path == "/_testbed/imds" and method == "GET":
            return reply("200 OK", imds.state.public_view())
        if path == "/_testbed/imds" and method == "POST":
            try:
                return reply("200 OK", imds.configure(read_json_object(environ)))
            except ValueError as err:
                return reply("400 Bad Request", {"error": str(err)})
        if path == "/_testbed/role" and method == "POST":
            try:
                return reply("200 OK", put_role(read_json_object(environ)))
            except Exception as err:  # moto's own validation errors, malformed JSON
                return reply("400 Bad Request", {"error": str(err)})
        return reply("404 Not Found", {"error": f"no test bed route {method} {path}"})

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="AWS endpoint port (0 = any free)")
    parser.add_argument("--imds-port", type=int, default=0, help="IMDS emulator port (0 = any free)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--seed", action="store_true", help="create the incident world before ready")
    parser.add_argument("--seed-account", action="append", default=None,
                        help="account to seed (repeatable; default: the instance's account)")
    parser.add_argument("--seed-region", action="append", default=None,
                        help="region to seed (repeatable; default: --region)")
    parser.add_argument("--state-file", help="also write the ready line to this file")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args()

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the test bed only listens on loopback")

    imds = ImdsEmulator(ImdsState(account_id=DEFAULT_ACCOUNT_ID, region=args.region),
                        mint_instance_credentials, host=args.host, port=args.imds_port)
    imds.start()

    moto = DomainDispatcherApplication(create_backend_app)
    app = CallRecorder(MotoGaps(CborFront(moto, extra_routes={"/_testbed/": control_app(imds)})))
    server = make_server(args.host, args.port, app, threaded=True,
                         request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://{args.host}:{server.server_port}"

    if args.seed:
        import seed

        seed.seed_world(endpoint, args.seed_account or [DEFAULT_ACCOUNT_ID],
                        args.seed_region or [args.region])

    ready = {
        "ready": True,
        "endpoint": endpoint,
        "imds_endpoint": imds.endpoint,
        "account_id": DEFAULT_ACCOUNT_ID,
        "pid": os.getpid(),
    }
    line = json.dumps(ready)
    if args.state_file:
        tmp = args.state_file + ".tmp"
        with open(tmp, "w") as handle:
            handle.write(line + "\n")
        os.replace(tmp, args.state_file)
    print(line, flush=True)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.exit_on_stdin_eof:
        def watch_stdin():
            sys.stdin.read()
            stop.set()
        threading.Thread(target=watch_stdin, daemon=True).start()
    stop.wait()
    imds.stop()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
