"""Records which AWS API actions reach the test bed, as IAM action names.

Read-only tools must call only the actions they declare; tests check this at the HTTP level:
clear the record (DELETE /_testbed/calls), run a tool, read it (GET /_testbed/calls ->
{"calls": ["logs:FilterLogEvents", ...]}). STS role requests are also kept whole (their
parameters: RoleSessionName, Policy, Tags.member.N.*, DurationSeconds, WebIdentityToken),
signed or not, at /_testbed/sts -> {"requests": [{"Action": "AssumeRole", ...}]}: moto does
not evaluate session policies or tags, so tests assert what reached it. The service comes from the SigV4 credential scope
(CloudWatch signs as `monitoring`, named `cloudwatch` in IAM); the action from the protocol:
X-Amz-Target (JSON), the path (RPC v2 CBOR), the `Action` parameter (Query/EC2), or the REST
route (EKS).
"""

import io
import re
import threading
import urllib.parse
from typing import Callable

SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/(?P<service>[^/]+)/aws4_request")
CBOR_PATH = re.compile(r"^/service/[^/]+/operation/(?P<op>[^/]+)$")
IAM_SERVICE = {"monitoring": "cloudwatch"}
STS_ROLE_ACTIONS = {"AssumeRole", "AssumeRoleWithWebIdentity"}
EKS_ROUTES = [
    ("GET", re.compile(r"^/clusters/?$"), "ListClusters"),
    ("GET", re.compile(r"^/clusters/[^/]+/node-groups/?$"), "ListNodegroups"),
    ("GET", re.compile(r"^/clusters/[^/]+/node-groups/[^/]+$"), "DescribeNodegroup"),
    ("GET", re.compile(r"^/clusters/[^/]+$"), "DescribeCluster"),
]


class CallRecorder:
    """WSGI middleware recording `service:Action` for every signed AWS request."""

    def __init__(self, app: Callable):
        self.app = app
        self.calls: list[str] = []
        self.sts_requests: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable):
        path = environ.get("PATH_INFO", "")
        if path == "/_testbed/calls":
            return self._control(environ, start_response, self.calls, "calls")
        if path == "/_testbed/sts":
            return self._control(environ, start_response, self.sts_requests, "requests")
        called = aws_action(environ)
        if called:
            with self.lock:
                self.calls.append(f"{IAM_SERVICE.get(called[0], called[0])}:{called[1]}")
        if environ.get("REQUEST_METHOD") == "POST" and not path.startswith("/_testbed/"):
            form = _form(environ)
            if form.get("Action") in STS_ROLE_ACTIONS:
                with self.lock:
                    self.sts_requests.append(form)
        return self.app(environ, start_response)

    def _control(self, environ: dict, start_response: Callable, record: list, key: str):
        import json

        with self.lock:
            if environ.get("REQUEST_METHOD") == "DELETE":
                record.clear()
            body = json.dumps({key: list(record)}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]


def aws_action(environ: dict) -> tuple[str, str] | None:
    """The signing service and the API action of a signed AWS request (None otherwise)."""
    path = environ.get("PATH_INFO", "")
    scope = SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if not scope or path.startswith(("/_testbed/", "/moto-api/")):
        return None
    service = scope["service"]
    action = _action(environ, service, path)
    return (service, action) if action else None


def _form(environ: dict) -> dict:
    """A form-encoded body's parameters (first value each); the body stays readable."""
    if "x-www-form-urlencoded" not in environ.get("CONTENT_TYPE", ""):
        return {}
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return {key: values[0] for key, values in form.items()}


def _action(environ: dict, service: str, path: str) -> str | None:
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rsplit(".", 1)[-1]
    cbor = CBOR_PATH.match(path)
    if cbor:
        return cbor["op"]
    if service == "eks":
        method = environ.get("REQUEST_METHOD", "GET")
        for route_method, pattern, action in EKS_ROUTES:
            if method == route_method and pattern.match(path):
                return action
        return f"{method} {path}"
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    if "Action" in query:
        return query["Action"][0]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return form.get("Action", [None])[0]
