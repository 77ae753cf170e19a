"""Real servers on loopback for the pipeline tests (started once per session).

Needs the pipeline extra and the MobileNetV2 ImageNet weights; without them the tests skip,
except under CI (``CI`` set), where a missing piece is a failure.
"""

from __future__ import annotations

import pytest
from ci_support import WEIGHTS_HINT, require, skip_unless_ci

for _m in ("torch", "torchvision", "fastapi", "uvicorn", "httpx", "jsonschema", "PIL",
           "skimage", "transformers"):
    require(_m)

# The child processes (servers) and this process use few threads: CI has 2 cores.
SERVER_ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
MAX_BODY = 2_000_000


@pytest.fixture(scope="session", autouse=True)
def _threads():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def weights():
    from taskcodec.errors import MissingWeightsError
    from taskcodec.nn.weights import ensure_weights

    try:
        return ensure_weights()
    except MissingWeightsError as exc:
        skip_unless_ci(str(exc), WEIGHTS_HINT)


@pytest.fixture(scope="session")
def max_body() -> int:
    """The request size limit the session's edge enforces."""
    return MAX_BODY


@pytest.fixture(scope="session")
def edge(weights, tmp_path_factory):
    """An edge process serving MobileNetV2 (with split) and the random BLIP."""
    from taskcodec.pipeline.procs import start_service

    log = tmp_path_factory.mktemp("edge") / "edge.log"
    svc = start_service("edge", ["--threads", "1", "--max-body-bytes", str(MAX_BODY)],
                        log_path=str(log), env=SERVER_ENV)
    yield svc
    svc.stop()
    assert svc.proc.returncode is not None


@pytest.fixture(scope="session")
def cloud(tmp_path_factory):
    """A cloud process with the rules planner (the embedding planner is tested in-process)."""
    from taskcodec.pipeline.procs import start_service

    log = tmp_path_factory.mktemp("cloud") / "cloud.log"
    svc = start_service("cloud", ["--planner", "rules"], log_path=str(log), env=SERVER_ENV)
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def photos():
    from taskcodec.zoo.photos import load_photo

    return {name: load_photo(name) for name in ("coffee", "chelsea", "astronaut")}
