"""The pipeline's wire forms: what travels between the device, the edge and the cloud.

Everything here is plain data (no pickle anywhere on the wire), so another implementation of
any tier can be written against this module alone:

* Media types: a split request's body is one taskcodec frame (:data:`FRAME_MEDIA_TYPE`, the
  stream format of ``docs/format.md``); an edge-only request's body is a JPEG
  (:data:`JPEG_MEDIA_TYPE`).
* Authentication: with a token set, every request but ``GET /health`` carries
  ``Authorization: Bearer <token>`` (:func:`auth_headers`); a server answers 401 otherwise.
* Plans: the cloud answers a request with HuggingGPT's JSON form, a list of steps::

      [{"task": "image-classification", "id": 0, "dep": [-1],
        "args": {"image": "<image>", "model": "mobilenet_v2", "placement": "auto"}}]

  ``task`` is one of :data:`TASKS`; ``dep`` lists the ids of the steps this one needs (``-1``:
  none); ``args.image`` names the request's image (``"<image>"``, or ``"<resource>-N"`` for
  the output of step N, as in HuggingGPT); ``args.text`` carries the question of a VQA step;
  ``args.model`` a registry model serving the task; ``args.placement`` one of
  :data:`PLACEMENTS` (``auto`` leaves it to the device's bandwidth policy; ``device``,
  ``edge`` or ``split`` pin it). :data:`PLAN_SCHEMA` is the JSON Schema; :func:`validate_plan`
  checks all of it (the schema, then the ids, the dependencies and the model registry).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

from taskcodec.errors import BadInputError, PlanError

__all__ = [
    "FRAME_MEDIA_TYPE",
    "JPEG_MEDIA_TYPE",
    "TASKS",
    "PLACEMENTS",
    "DEFAULT_MODELS",
    "PLAN_SCHEMA",
    "MAX_REQUEST_CHARS",
    "MAX_PLAN_BODY_BYTES",
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "auth_headers",
    "check_text",
    "loads_json",
    "validate_plan",
]

FRAME_MEDIA_TYPE = "application/x-taskcodec-frame"
"""Content-Type of a split request: one taskcodec frame holding the head's features."""

JPEG_MEDIA_TYPE = "image/jpeg"
"""Content-Type of an edge-only request: the photo as a JPEG."""

TASKS: Dict[str, str] = {
    "image-classification": "classify",
    "image-to-text": "caption",
    "visual-question-answering": "vqa",
}
"""Plan task names (HuggingGPT's) → the registry's task names."""

PLACEMENTS = ("auto", "device", "edge", "split")
"""Where a plan step may run: ``auto`` (the device's policy decides) or pinned."""

DEFAULT_MODELS: Dict[str, str] = {"image-classification": "mobilenet_v2",
                                  "image-to-text": "scenes-blip",
                                  "visual-question-answering": "scenes-blip"}
"""The model a step runs when the plan names none."""

MAX_REQUEST_CHARS = 2000
"""The longest request text the cloud plans, and the longest VQA question (``args.text`` of a
plan step, the edge's ``question``): a VQA step carries the request itself as its question."""

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
"""Default limit of an edge request's body (a frame, an image, a probe), bytes."""

MAX_PLAN_BODY_BYTES = 16 * 1024
"""The largest ``POST /v1/plan`` body (refused while it is read, never buffered past this)."""

MAX_JSON_DEPTH = 32
"""The deepest nesting of arrays / objects accepted in JSON from the wire or from an LLM."""

PLAN_SCHEMA: Dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "array",
    "minItems": 1,
    "maxItems": 8,
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["task", "id", "dep", "args"],
        "properties": {
            "task": {"enum": list(TASKS)},
            "id": {"type": "integer", "minimum": 0},
            "dep": {"type": "array", "minItems": 1,
                    "items": {"type": "integer", "minimum": -1}},
            "args": {
                "type": "object",
                "additionalProperties": False,
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "pattern": r"^(<image>|<resource>-\d+)$"},
                    "text": {"type": "string", "minLength": 1, "maxLength": MAX_REQUEST_CHARS},
                    "model": {"type": "string"},
                    "placement": {"enum": list(PLACEMENTS)},
                },
            },
        },
    },
}
"""JSON Schema of a plan."""


def auth_headers(token: Optional[str]) -> Dict[str, str]:
    """The request headers that carry ``token`` (none without a token)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")


def loads_json(data: Any, *, max_depth: int = MAX_JSON_DEPTH, what: str = "body") -> Any:
    """``json.loads`` for text from the wire: :class:`~taskcodec.errors.BadInputError` for
    bytes that are not UTF-8, text that is not JSON, or nesting deeper than ``max_depth``
    (checked before parsing, so a deep document never reaches the recursive parser)."""
    import json

    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInputError(f"{what} is not UTF-8 (byte {exc.start})") from None
    depth = deepest = 0
    for m in _BRACKETS.finditer(_STRING.sub('""', data)):
        depth += 1 if m.group() in "[{" else -1
        deepest = max(deepest, depth)
        if deepest > max_depth:
            raise BadInputError(f"{what} nests arrays / objects deeper than {max_depth} levels")
    try:
        return json.loads(data)
    except RecursionError:  # pragma: no cover - the scan above bounds the depth
        raise BadInputError(f"{what} nests too deeply") from None
    except ValueError as exc:
        raise BadInputError(f"{what} is not JSON: {exc}") from None


def check_text(text: Any, what: str, max_chars: int = MAX_REQUEST_CHARS) -> str:
    """``text`` if it is a string of 1 to ``max_chars`` characters (not counting surrounding
    blanks) that is valid Unicode (no lone surrogate); :class:`BadInputError` otherwise."""
    if not isinstance(text, str):
        raise BadInputError(f"{what} must be a string, not {type(text).__name__}")
    if not 1 <= len(text.strip()) <= max_chars:
        raise BadInputError(f"{what} must be a string of 1 to {max_chars} characters "
                            f"(got {len(text.strip())})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadInputError(f"{what} is not valid Unicode text (a lone surrogate at "
                            f"character {exc.start})") from None
    return text


def validate_plan(plan: Any) -> List[Dict[str, Any]]:
    """Check ``plan`` (a parsed JSON list) and return it with defaults filled in.

    Raises :class:`~taskcodec.errors.PlanError` naming the first problem found.
    """
    import jsonschema

    from taskcodec.zoo.runtimes import REGISTRY

    try:
        jsonschema.validate(plan, PLAN_SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "plan"
        raise PlanError(f"plan does not follow the schema at {where}: {exc.message}") from None
    seen: List[int] = []
    out = []
    for step in plan:
        sid = step["id"]
        if sid in seen:
            raise PlanError(f"step id {sid} appears twice")
        for d in step["dep"]:
            if d != -1 and d not in seen:
                raise PlanError(f"step {sid} depends on {d}, which is not an earlier step")
        m = re.match(r"<resource>-(\d+)$", step["args"]["image"])
        if m and int(m.group(1)) not in step["dep"]:
            raise PlanError(f"step {sid} uses the output of step {m.group(1)} "
                            "without depending on it")
        args = dict(step["args"])
        args.setdefault("model", DEFAULT_MODELS[step["task"]])
        args.setdefault("placement", "auto")
        spec = REGISTRY.get(args["model"])
        if spec is None:
            raise PlanError(f"step {sid} names model {args['model']!r}, which the registry "
                            f"does not hold ({sorted(REGISTRY)})")
        if TASKS[step["task"]] not in spec.tasks:
            raise PlanError(f"step {sid}: {args['model']} does {list(spec.tasks)}, "
                            f"not {step['task']}")
        if step["task"] == "visual-question-answering" and not args.get("text"):
            raise PlanError(f"step {sid}: a visual-question-answering step needs args.text")
        seen.append(sid)
        out.append({**step, "args": args})
    return out
