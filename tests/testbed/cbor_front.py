"""Smithy RPC v2 CBOR front for moto.

aws-sdk-cloudwatch (Rust) speaks Smithy RPC v2 CBOR: `POST /service/<Service>/operation/<Op>`
with a CBOR body and the header `smithy-protocol: rpc-v2-cbor`. moto only speaks Query and
AWS JSON 1.0 for CloudWatch and answers such requests with 404. Both protocols carry the
same shapes, so this WSGI middleware rewrites a CBOR request into JSON 1.0 (`POST /` with
`X-Amz-Target: <Service>.<Op>`), lets moto answer, and turns the JSON answer back into CBOR.

The conversion is driven by botocore's service model (shipped with moto), so timestamps
become CBOR tag 1 epoch seconds, blobs become byte strings and numbers get the type the
shape declares — the Rust decoder is strict about all three. Every other request passes
through untouched, so one endpoint serves every AWS service.

The rewritten request is signed again with the caller's own key (looked up in moto's
backends, which live in this process), so moto's permission enforcement — when a test turns
it on — judges CloudWatch calls by the caller's policies, as AWS would.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import re
from typing import Any, Callable
from xml.etree import ElementTree

import botocore.session
import cbor2
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

CBOR_PATH = re.compile(r"^/service/(?P<service>[^/]+)/operation/(?P<operation>[^/]+)$")

# Smithy service shape name (as it appears in the URL) -> botocore service name.
SERVICES_BY_TARGET_PREFIX: dict[str, str] = {}


def _service_model_for(target_prefix: str):
    """Finds the botocore model whose JSON target prefix matches the CBOR URL's service."""
    session = botocore.session.get_session()
    if not SERVICES_BY_TARGET_PREFIX:
        for name in ("cloudwatch",):
            model = session.get_service_model(name)
            SERVICES_BY_TARGET_PREFIX[model.metadata["targetPrefix"]] = name
    name = SERVICES_BY_TARGET_PREFIX.get(target_prefix)
    return session.get_service_model(name) if name else None


def _to_epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    return float(value)


def _to_datetime(value: Any) -> dt.datetime:
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    text = str(value).replace("Z", "+00:00")
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed


def cbor_input_to_json(value: Any, shape) -> Any:
    """Converts a decoded CBOR request value into its AWS JSON 1.0 form."""
    if value is None or shape is None:
        return value
    kind = shape.type_name
    if kind == "structure":
        members = shape.members
        return {
            key: cbor_input_to_json(item, members.get(key))
            for key, item in value.items()
            if key in members
        }
    if kind == "list":
        return [cbor_input_to_json(item, shape.member) for item in value]
    if kind == "map":
        return {key: cbor_input_to_json(item, shape.value) for key, item in value.items()}
    if kind == "timestamp":
        return _to_epoch(value)
    if kind == "blob":
        return base64.b64encode(value).decode() if isinstance(value, bytes) else value
    return value


def json_output_to_cbor(value: Any, shape) -> Any:
    """Converts a JSON 1.0 response value into the value types RPC v2 CBOR requires."""
    if value is None or shape is None:
        return None
    kind = shape.type_name
    if kind == "structure":
        out = {}
        for key, item in value.items():
            member = shape.members.get(key)
            converted = json_output_to_cbor(item, member)
            if member is not None and converted is not None:
                out[key] = converted
        return out
    if kind == "list":
        return [json_output_to_cbor(item, shape.member) for item in value]
    if kind == "map":
        return {key: json_output_to_cbor(item, shape.value) for key, item in value.items()}
    if kind == "timestamp":
        return _to_datetime(value)
    if kind == "blob":
        return base64.b64decode(value) if isinstance(value, str) else value
    if kind in ("double", "float"):
        return float(value)
    if kind in ("integer", "long", "short", "byte"):
        return int(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    return value


def _error_from_body(body: bytes) -> tuple[str, str]:
    """Reads the error code and message from moto's JSON or XML error body."""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
            code = doc.get("__type") or doc.get("code") or "InternalFailure"
            return code.split("#")[-1], doc.get("message") or doc.get("Message") or ""
        except ValueError:
            pass
    if text.startswith("<"):
        try:
            root = ElementTree.fromstring(text)
            code = root.findtext(".//{*}Code") or root.findtext(".//Code") or "InternalFailure"
            message = root.findtext(".//{*}Message") or root.findtext(".//Message") or ""
            return code, message
        except ElementTree.ParseError:
            pass
    return "InternalFailure", text[:500]


AUTH_FIELDS = re.compile(r"Credential=(?P<credential>[^,\s]+).*SignedHeaders=(?P<signed>[^,\s]+)")


def _sign_again(environ: dict, body: bytes) -> None:
    """Re-signs a rewritten request with the caller's key, found in moto's in-process backends.

    Leaves the request alone when the key is unknown: moto then rejects it as it would the
    original (InvalidClientTokenId), which is what a test of bad credentials expects.
    """
    match = AUTH_FIELDS.search(environ.get("HTTP_AUTHORIZATION", ""))
    if not match:
        return
    access_key_id, _date, region, service, _ = match["credential"].split("/")
    from moto.iam.access_control import CreateAccessKeyFailure, create_access_key
    from moto.iam.models import get_account_id_from

    token = environ.get("HTTP_X_AMZ_SECURITY_TOKEN")
    key_headers = {"X-Amz-Security-Token": token} if token else {}
    try:
        key = create_access_key(get_account_id_from(access_key_id), "aws", access_key_id, key_headers)
        credentials = key.create_credentials()
    except (CreateAccessKeyFailure, KeyError, AttributeError):
        return
    host = environ.get("HTTP_HOST", "localhost")
    headers = {
        "Host": host,
        "Content-Type": environ["CONTENT_TYPE"],
        "X-Amz-Target": environ["HTTP_X_AMZ_TARGET"],
    }
    if token:
        headers["X-Amz-Security-Token"] = token
    request = AWSRequest(method="POST", url=f"http://{host}/", data=body, headers=headers)
    SigV4Auth(credentials, service, region).add_auth(request)
    environ["HTTP_AUTHORIZATION"] = request.headers["Authorization"]
    environ["HTTP_X_AMZ_DATE"] = request.headers["X-Amz-Date"]


class CborFront:
    """WSGI middleware: RPC v2 CBOR in front, moto's JSON 1.0 behind."""

    def __init__(self, app: Callable, extra_routes: dict[str, Callable] | None = None):
        self.app = app
        self.extra_routes = extra_routes or {}

    def __call__(self, environ: dict, start_response: Callable):
        path = environ.get("PATH_INFO", "")
        for prefix, handler in self.extra_routes.items():
            if path.startswith(prefix):
                return handler(environ, start_response)
        match = CBOR_PATH.match(path)
        if match and environ.get("HTTP_SMITHY_PROTOCOL", "").lower() == "rpc-v2-cbor":
            return self._translate(environ, start_response, match["service"], match["operation"])
        return self.app(environ, start_response)

    def _translate(self, environ, start_response, service: str, operation: str):
        model = _service_model_for(service)
        if model is None or operation not in model.operation_names:
            return _cbor_reply(start_response, 404, {
                "__type": "UnknownOperationException",
                "message": f"the test bed's CBOR front does not know {service}.{operation}",
            })
        op = model.operation_model(operation)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        request = cbor2.loads(raw) if raw else {}
        json_body = json.dumps(cbor_input_to_json(request, op.input_shape) or {}).encode()

        inner = dict(environ)
        inner["PATH_INFO"] = "/"
        inner["RAW_URI"] = "/"
        inner["REQUEST_URI"] = "/"
        inner["CONTENT_TYPE"] = "application/x-amz-json-1.0"
        inner["CONTENT_LENGTH"] = str(len(json_body))
        inner["HTTP_X_AMZ_TARGET"] = f"{service}.{operation}"
        inner.pop("HTTP_SMITHY_PROTOCOL", None)
        inner["wsgi.input"] = io.BytesIO(json_body)
        _sign_again(inner, json_body)

        captured: dict[str, Any] = {}

        def capture(status, headers, exc_info=None):
            captured["status"] = int(status.split(" ", 1)[0])
            return lambda _chunk: None

        result = self.app(inner, capture)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        status = captured.get("status", 500)
        if status >= 300:
            code, message = _error_from_body(body)
            return _cbor_reply(start_response, status, {"__type": code, "message": message})
        document = json.loads(body) if body.strip() else {}
        return _cbor_reply(start_response, status, json_output_to_cbor(document, op.output_shape) or {})


def _cbor_reply(start_response, status: int, document: dict):
    payload = cbor2.dumps(document, datetime_as_timestamp=True, timezone=dt.timezone.utc)
    reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}.get(status, "Error")
    start_response(f"{status} {reason}", [
        ("Content-Type", "application/cbor"),
        ("smithy-protocol", "rpc-v2-cbor"),
        ("Content-Length", str(len(payload))),
    ])
    return [payload]
