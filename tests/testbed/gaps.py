"""Answers AWS gives where moto fails with a 500 (TESTING.md, moto gap 5).

moto decides first — so its permission checks still apply under enforcement — and only a
500 from moto for one of these actions is replaced by what AWS answers:

* logs GetQueryResults for an unknown query id: 400 ResourceNotFoundException;
* eks ListNodegroups for an unknown cluster: 404 ResourceNotFoundException;
* elasticache DescribeServerlessCaches and DescribeEvents (not implemented by moto): an
  empty list, as for an account with no serverless caches and no events.

Richer answers of these calls (serverless caches, events) are tested with the SDK's replay
client instead (tests/tools_replay.rs).
"""

from typing import Callable

from recorder import aws_action

ELASTICACHE_XMLNS = "http://elasticache.amazonaws.com/doc/2015-02-02/"


def _empty_elasticache(operation: str, items: str) -> tuple[str, list, bytes]:
    body = (f'<{operation}Response xmlns="{ELASTICACHE_XMLNS}"><{operation}Result><{items}/>'
            f'</{operation}Result><ResponseMetadata><RequestId>testbed</RequestId>'
            f'</ResponseMetadata></{operation}Response>')
    return "200 OK", [("Content-Type", "text/xml")], body.encode()


ANSWERS = {
    ("logs", "GetQueryResults"): lambda: (
        "400 Bad Request", [("Content-Type", "application/x-amz-json-1.1")],
        b'{"__type": "ResourceNotFoundException", "message": "The specified query could not be found."}'),
    ("eks", "ListNodegroups"): lambda: (
        "404 Not Found", [("Content-Type", "application/json"),
                          ("x-amzn-ErrorType", "ResourceNotFoundException")],
        b'{"message": "No cluster found for name."}'),
    ("elasticache", "DescribeServerlessCaches"):
        lambda: _empty_elasticache("DescribeServerlessCaches", "ServerlessCaches"),
    ("elasticache", "DescribeEvents"): lambda: _empty_elasticache("DescribeEvents", "Events"),
}


class MotoGaps:
    """WSGI middleware: moto's answer, unless it is a 500 for one of ANSWERS' actions."""

    def __init__(self, app: Callable):
        self.app = app

    def __call__(self, environ: dict, start_response: Callable):
        called = aws_action(environ)
        answer = ANSWERS.get(called) if called else None
        if answer is None:
            return self.app(environ, start_response)
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        try:
            body = b"".join(self.app(environ, capture))
        except Exception:  # moto raises where it has no answer; the server would say 500
            captured["status"] = "500 Internal Server Error"
            body = b""
        if not captured.get("status", "").startswith("500"):
            start_response(captured["status"], captured["headers"])
            return [body]
        status, headers, replacement = answer()
        start_response(status, headers + [("Content-Length", str(len(replacement)))])
        return [replacement]
