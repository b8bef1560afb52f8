"""``python -m raycifar ARGS`` for the tests, without paying torch's import on every command.

A command run by the tests is a separate process with its own exit code, its own stdout and
stderr, its own working folder and environment, as from :func:`subprocess.run`. Most of the
2–4 s such a process takes goes to importing torch, numpy and pyarrow, again and again. Here one
server process imports them once; each command runs in a fresh ``fork()`` of it, the way
``python -m raycifar`` would run it (``runpy``, the same ``sys.argv``, ``sys.path[0]`` and exit
handlers), and its output comes back through files.

A command whose environment puts other modules first on the import path (a ``PYTHONPATH``
that differs from this process's, as for the shadow-module and fault-hook tests) runs as a
plain subprocess instead: modules imported before the fork cannot be shadowed. So does every
command when ``RAYCIFAR_TEST_FORK=0`` is set (to compare, or to rule the server out).
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

PRELOAD = ("torch", "torchvision", "numpy", "pyarrow.parquet", "pydantic", "rich.console", "yaml", "safetensors.torch")


def _run_child(request: dict) -> None:
    """In the forked child: become ``python -m raycifar ARGS`` and never return."""
    import runpy
    import traceback

    code = 1
    try:
        os.setpgid(0, 0)  # the server stops a command that ran past its timeout with its group
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        sys.stdin = open(os.devnull)  # noqa: SIM115
        sys.argv = ["raycifar", *request["args"]]
        sys.path[0] = os.getcwd()  # as `python -m` puts it
        try:
            runpy.run_module("raycifar", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            if not isinstance(done.code, int | None):
                print(done.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - as the interpreter: the traceback on stderr, exit 1
            traceback.print_exc()
        atexit._run_exitfuncs()  # the interpreter's exit handlers (some end the process themselves)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001, S110 - nothing left to report it to
                pass
        os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    """The child's exit code, or ``None`` (after killing its process group) past ``timeout`` s."""
    done = threading.Event()
    status: list[int] = []

    def reap() -> None:
        status.append(os.waitpid(pid, 0)[1])
        done.set()

    threading.Thread(target=reap, daemon=True).start()
    if not done.wait(timeout):
        try:
            os.killpg(pid, 9)
        except ProcessLookupError:
            pass
        done.wait()
        return None
    return os.waitstatus_to_exitcode(status[0])


def serve() -> None:
    """Read one JSON request per line on stdin, answer ``{"returncode": int | null}`` per line."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(request)
        print(json.dumps({"returncode": _wait(pid, request["timeout"])}), flush=True)


class CliServer:
    """The client: one server per test session, one command at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._pythonpath = os.environ.get("PYTHONPATH", "")

    def _server(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-c", f"import runpy; runpy.run_path({str(Path(__file__))!r}, run_name='cli_server')"
                 "['serve']()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tempfile.gettempdir(),
            )  # fmt: skip
            assert json.loads(self._process.stdout.readline()) == {"ready": True}
        return self._process

    def run(self, args: list[str], *, cwd: Path | str | None, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        """Like ``subprocess.run([python, -m, raycifar, *args], capture_output=True, text=True)``;
        raises :class:`subprocess.TimeoutExpired` past ``timeout`` seconds."""
        command = [sys.executable, "-m", "raycifar", *args]
        if env.get("PYTHONPATH", self._pythonpath) != self._pythonpath or os.environ.get("RAYCIFAR_TEST_FORK") == "0":
            return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        with self._lock, tempfile.TemporaryDirectory(prefix="cli-") as folder:
            out, err = Path(folder, "stdout"), Path(folder, "stderr")
            request = {"args": list(args), "cwd": str(cwd or os.getcwd()), "env": env, "timeout": timeout,
                       "stdout": str(out), "stderr": str(err)}  # fmt: skip
            server = self._server()
            server.stdin.write(json.dumps(request) + "\n")
            server.stdin.flush()
            returncode = json.loads(server.stdout.readline())["returncode"]
            stdout, stderr = out.read_text(), err.read_text()
        if returncode is None:
            raise subprocess.TimeoutExpired(command, timeout, stdout, stderr)
        return subprocess.CompletedProcess(command, returncode, stdout, stderr)

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.stdin.close()
            self._process.wait(timeout=30)


SERVER = CliServer()
atexit.register(SERVER.close)


def run_cli(
    args: list[str] | tuple[str, ...], *, cwd: Path | str | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m raycifar ARGS`` (see the module's docstring); never raises on a non-zero exit."""
    return SERVER.run(list(args), cwd=cwd, env=dict(os.environ if env is None else env), timeout=timeout)
