"""HTTP between the device and the servers, with every failure mapped to the error tree.

* Network failures, timeouts and HTTP 5xx from the edge:
  :class:`~taskcodec.errors.EdgeUnavailable` (the device falls back).
* HTTP 401 / 403 from the edge or the cloud: :class:`~taskcodec.errors.AuthenticationError`
  (a configuration error: the device does not fall back).
* The cloud planner unreachable, or answering other than 200 / 422:
  :class:`~taskcodec.errors.PlanError`; a 422 ``PlanRefused``:
  :class:`~taskcodec.errors.PlanRefused`.
* A reply that is not a JSON object: :class:`~taskcodec.errors.EdgeUnavailable` (edge) or
  :class:`~taskcodec.errors.PlanError` (cloud).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from taskcodec.errors import AuthenticationError, EdgeUnavailable, PlanError, PlanRefused
from taskcodec.pipeline.protocol import auth_headers

__all__ = ["EdgeConnection", "post_plan"]


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

    def __init__(self, base_url: str, token: Optional[str], timeout_s: float) -> None:
        import httpx

        self.token, self.timeout_s = token, timeout_s
        self.http = httpx.Client(base_url=base_url, headers=auth_headers(token),
                                 timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kw: Any) -> Any:
        """One request; returns the response when it is 2xx, 3xx or 4xx other than 401 / 403."""
        import httpx

        try:
            r = self.http.request(method, path, **kw)
        except httpx.TimeoutException as exc:
            raise EdgeUnavailable(f"edge timed out after {self.timeout_s:g} s ({exc!r})") from None
        except httpx.HTTPError as exc:
            raise EdgeUnavailable(f"edge unreachable ({type(exc).__name__}: {exc})") from None
        _check_token(r, "edge", self.token)
        if r.status_code >= 500:
            raise EdgeUnavailable(f"edge failed: HTTP {r.status_code} {r.text[:200]}")
        return r

    def get_json(self, path: str) -> Dict[str, Any]:
        """``GET path``, which must answer 200 with a JSON object."""
        r = self.request("GET", path)
        if r.status_code != 200:
            raise EdgeUnavailable(f"edge: GET {path} answered HTTP {r.status_code} "
                                  f"{r.text[:200]}")
        return json_reply(r)


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
