"""HTTP between the device and the servers, with every failure mapped to the error tree.

* Network failures, timeouts and HTTP 5xx from the edge:
  :class:`~taskcodec.errors.EdgeUnavailable` (the device falls back). Every edge request is
  idempotent (an inference changes nothing on the edge), so one that failed before an answer
  (the connection refused, reset or closed; HTTP 502 / 503 / 504; a 500 that is not the
  edge's own JSON error, as a proxy answers for a replica that died) is sent again, up to
  ``retries`` times, after 0.1 s, 0.2 s, ...; a timeout is not (its budget is spent).
* HTTP 401 / 403 from the edge or the cloud: :class:`~taskcodec.errors.AuthenticationError`
  (a configuration error: the device does not fall back).
* The cloud planner unreachable, or answering other than 200 / 422:
  :class:`~taskcodec.errors.PlanError`; a 422 ``PlanRefused``:
  :class:`~taskcodec.errors.PlanRefused`.
* A reply that is not a JSON object: :class:`~taskcodec.errors.EdgeUnavailable` (edge) or
  :class:`~taskcodec.errors.PlanError` (cloud).
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

from taskcodec.errors import AuthenticationError, EdgeUnavailable, PlanError, PlanRefused
from taskcodec.pipeline.protocol import auth_headers

__all__ = ["EdgeConnection", "post_plan", "transient", "retried_errors"]


def _check_token(r: Any, who: str, token: Optional[str]) -> None:
    if r.status_code in (401, 403):
        sent = "the token given" if token else "no token (set token= or TASKCODEC_TOKEN)"
        raise AuthenticationError(f"the {who} refused {sent}: HTTP {r.status_code} "
                                  f"{r.text[:200]}")


def _json_object(r: Any, who: str, error: type) -> Dict[str, Any]:
    try:
        out = r.json()
    except ValueError:
        raise error(f"the {who} replied with something that is not JSON: "
                    f"{r.text[:200]!r}") from None
    if not isinstance(out, dict):
        raise error(f"the {who} replied with a JSON {type(out).__name__}, not an object")
    return out


class EdgeConnection:
    """An HTTP client for the edge at ``base_url`` (the link emulator's URL when emulated)."""

    def __init__(self, base_url: str, token: Optional[str], timeout_s: float,
                 retries: int = 2) -> None:
        import httpx

        self.token, self.timeout_s, self.retries = token, timeout_s, int(retries)
        self.retried = 0  # requests sent again, over this connection's life
        self.http = httpx.Client(base_url=base_url, headers=auth_headers(token),
                                 timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kw: Any) -> Any:
        """One request (retried as the module says); returns the response when it is 2xx,
        3xx or 4xx other than 401 / 403."""
        import httpx

        attempt = 0
        while True:
            try:
                r = self.http.request(method, path, **kw)
            except httpx.TimeoutException as exc:
                raise EdgeUnavailable(f"edge timed out after {self.timeout_s:g} s "
                                      f"({exc!r})") from None
            except httpx.HTTPError as exc:
                if attempt >= self.retries or not isinstance(exc, retried_errors()):
                    raise EdgeUnavailable(f"edge unreachable ({type(exc).__name__}: {exc})"
                                          f"{_tries(attempt)}") from None
            else:
                _check_token(r, "edge", self.token)
                if r.status_code < 500:
                    return r
                if attempt >= self.retries or not transient(r):
                    raise EdgeUnavailable(f"edge failed: HTTP {r.status_code} {r.text[:200]}"
                                          f"{_tries(attempt)}")
            attempt += 1
            self.retried += 1
            time.sleep(0.1 * attempt)

    def get_json(self, path: str) -> Dict[str, Any]:
        """``GET path``, which must answer 200 with a JSON object."""
        r = self.request("GET", path)
        if r.status_code != 200:
            raise EdgeUnavailable(f"edge: GET {path} answered HTTP {r.status_code} "
                                  f"{r.text[:200]}")
        return json_reply(r)


def retried_errors() -> tuple:
    """Transport errors after which a request is sent again (it got no answer)."""
    import httpx

    return (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def transient(r: Any) -> bool:
    """An HTTP 5xx worth a retry: 502 / 503 / 504, or a 500 without the edge's JSON error
    (a 500 of the edge itself is a bug in it, the same on every try)."""
    if r.status_code in (502, 503, 504):
        return True
    try:
        return r.status_code == 500 and r.json().get("error") != "InternalError"
    except (ValueError, AttributeError):
        return True


def _tries(attempt: int) -> str:
    return f" (after {attempt + 1} tries)" if attempt else ""


def json_reply(r: Any) -> Dict[str, Any]:
    """The edge's reply as a JSON object."""
    return _json_object(r, "edge", EdgeUnavailable)


def post_plan(cloud_url: str, request: str, token: Optional[str], timeout_s: float) -> Any:
    """``POST /v1/plan`` to the cloud planner; the plan as it came (validate it)."""
    import httpx

    try:
        r = httpx.post(f"{cloud_url.rstrip('/')}/v1/plan", json={"request": request},
                       headers=auth_headers(token), timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise PlanError(f"cloud planner unreachable: {exc}") from None
    _check_token(r, "cloud planner", token)
    if r.status_code == 422:
        body = _json_object(r, "cloud planner", PlanError)
        if body.get("error") == "PlanRefused":
            raise PlanRefused(str(body.get("detail")))
    if r.status_code != 200:
        raise PlanError(f"cloud planner: HTTP {r.status_code} {r.text[:300]}")
    return _json_object(r, "cloud planner", PlanError).get("plan")
