"""Real llama.cpp servers on 127.0.0.1 for the tests: llama-cpp-python's
(``python -m llama_cpp.server``) and, when it was built, llama.cpp's own C++ ``llama-server``,
each serving a tiny GGUF model (:mod:`tests.fakes.tiny_llama`) on a free port.

``with LlamaServer(model, alias) as srv:`` starts the server, waits until ``/v1/models``
answers (or the process dies: its log's tail is the error), and stops it, process group and
all, on exit. ``srv.host`` is its base URL, ending in /v1; ``srv.log`` its output.

:func:`llama_server_binary` builds ``llama-server`` with cmake from the llama.cpp source
vendored in llama-cpp-python's sdist (the same version as the Python server), statically
linked, once: it is kept in the cache dir beside the vocabulary. Measured on this project's 2
shared cores: 10.4 CPU-minutes (25 min of wall time while other builds and test suites ran;
about 6 min on 2 idle cores); then a cached binary starts in 0.2 s.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.fakes.tiny_llama import cache_dir, fetch_sdist

START_TIMEOUT_S = 60.0  # import, model load (~17 MB) and bind; < 3 s on 2 shared cores
N_CTX = 2048  # the prompt (~500 tokens with the llama vocabulary) and the answer cap


CMAKE_OPTIONS = [  # llama-server alone, static, offline: no web UI fetched, no TLS, no tests
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
]
BUILD_TIMEOUT_S = 3600


def llama_server_binary(version: str) -> Path:
    """``llama-server`` built from llama-cpp-python ``version``'s vendored llama.cpp: from
    the cache, else built there once (RuntimeError when cmake or the build fails)."""
    keep = cache_dir() / f"llama-cpp-python-{version}" / "llama-server"
    if keep.is_file():
        return keep
    if shutil.which("cmake") is None:
        raise RuntimeError("cmake is not installed (apt-get install cmake)")
    keep.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=keep.parent) as tmp:
        tmp = Path(tmp)
        with tarfile.open(fetch_sdist(version, tmp)) as tar:
            vendored = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name]
            tar.extractall(tmp, members=vendored, filter="data")
        src = next(tmp.glob("llama_cpp_python-*/vendor/llama.cpp"))
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        for cmd in ([ "cmake", "-S", str(src), "-B", str(tmp / "build"), *gen, *CMAKE_OPTIONS],
                    ["cmake", "--build", str(tmp / "build"), "--target", "llama-server",
                     "--parallel", str(os.cpu_count() or 2)]):
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
            if res.returncode:
                raise RuntimeError(f"{' '.join(cmd[:2])} failed: {res.stdout[-1500:]}"
                                   f"{res.stderr[-1500:]}")
        part = keep.with_suffix(".part")
        shutil.copy2(tmp / "build" / "bin" / "llama-server", part)
        part.replace(keep)  # atomic: a concurrent or killed run never sees half a binary
    return keep


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python_server_cmd(model: Path, alias: str, port: int) -> list[str]:
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias",
            alias, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(N_CTX),
            "--n_threads", "1", "--n_threads_batch", "1"]


def cpp_server_cmd(binary: Path, model: Path, alias: str, port: int) -> list[str]:
    return [str(binary), "-m", str(model), "--alias", alias, "--host", "127.0.0.1", "--port",
            str(port), "-c", str(N_CTX), "-t", "1", "-np", "2", "--no-webui"]


class LlamaServer:
    def __init__(self, model: Path, alias: str, log: Path, binary: Path | None = None) -> None:
        self.port = free_port()
        self.cmd = (cpp_server_cmd(binary, model, alias, self.port) if binary
                    else python_server_cmd(model, alias, self.port))
        self.host = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> LlamaServer:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"{self.cmd[0]} exited ({self.proc.returncode}): "
                                   f"{self.tail()}")
            if self.models() is not None:
                return self
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"no answer from {self.host}/models within {START_TIMEOUT_S:g} s: "
                           f"{self.tail()}")

    def models(self) -> list[str] | None:
        """The ids the server lists at /v1/models, or None while it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.host}/models", timeout=2) as r:
                return [m["id"] for m in json.load(r)["data"]]
        except (OSError, ValueError, KeyError):
            return None

    def tail(self, chars: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __exit__(self, *exc) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


if __name__ == "__main__":  # pragma: no cover - build (or find) the cached llama-server
    from importlib.metadata import version

    t = time.perf_counter()
    print(llama_server_binary(version("llama_cpp_python")), f"{time.perf_counter() - t:.0f} s")
