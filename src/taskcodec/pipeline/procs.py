"""Start the tiers as real processes on loopback and stop them again (demo, benchmark, tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional, Sequence

from taskcodec.errors import TaskcodecError

__all__ = ["free_port", "Service", "start_service"]

def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies, even by SIGKILL (Linux)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Service:
    """A ``taskcodec serve-*`` child process; :meth:`stop` ends it (and only it)."""

    def __init__(self, name: str, proc: subprocess.Popen, url: str, log_path: str) -> None:
        self.name, self.proc, self.url, self.log_path = name, proc, url, log_path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def kill(self) -> None:
        """End it abruptly (SIGKILL), as a crashed host would."""
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def wait_ready(self, timeout: float = 180.0) -> "Service":
        """Poll ``/health`` until it answers 200; stop the process and raise on failure."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise TaskcodecError(f"{self.name} exited with {self.proc.returncode} while "
                                     f"starting:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise TaskcodecError(f"{self.name} did not answer /health within {timeout:g} s:\n"
                             f"{self.log()[-3000:]}")

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_service(kind: str, args: Sequence[str] = (), *, port: Optional[int] = None,
                  log_path: str, ready_timeout: float = 180.0,
                  env: Optional[dict] = None, wait: bool = True) -> Service:
    """Run ``python -m taskcodec serve-<kind> --port P ARGS``; with ``wait``, wait for
    ``/health`` (else call :meth:`Service.wait_ready`)."""
    port = port or free_port()
    cmd: List[str] = [sys.executable, "-m", "taskcodec", f"serve-{kind}", "--port",
                      str(port), *args]
    log = open(log_path, "wb")
    child_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env,
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    log.close()
    svc = Service(kind, proc, f"http://127.0.0.1:{port}", log_path)
    if wait:
        svc.wait_ready(ready_timeout)
    return svc
