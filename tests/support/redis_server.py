"""A real redis-server for tests: loopback only, its own data directory, stopped by the caller."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.process import end_process, free_port

START_TIMEOUT = 15.0  # seconds; an AOF reload of test data takes milliseconds, a cold start less
STOP_TIMEOUT = 10.0  # seconds for a clean shutdown (it flushes the AOF) before SIGKILL
PING_INTERVAL = 0.02  # seconds between readiness probes while it starts
INSTALL_HINT = (
    "redis-server is not installed. The Redis tests need a real server: install the Debian "
    "package with `apt-get install redis-server`, or run `scripts/test`, which installs it."
)


class RedisServerMissing(RuntimeError):
    """The redis-server binary is not on this machine."""


def find_redis_server() -> str:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).is_file():
        raise RedisServerMissing(INSTALL_HINT)
    return binary


@dataclass
class RedisServer:
    """One redis-server process; ``start`` again after ``stop`` reuses its port and data."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    appendonly: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "redis.log"

    def command(self) -> list[str]:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else []
        return [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--protected-mode", "yes",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "no",
            *persistence,
            "--daemonize", "no",
            "--logfile", str(self.log_file),
        ]  # fmt: skip

    def start(self) -> RedisServer:
        if self.process is not None:
            raise RuntimeError("redis-server is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers_ping():
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"redis-server exited at start:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING in {START_TIMEOUT} s")
            time.sleep(PING_INTERVAL)
        return self

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM), as an operator's restart would."""
        self._end(signal.SIGTERM)

    def crash(self) -> None:
        """Kill without warning (SIGKILL), as a power cut would."""
        self._end(signal.SIGKILL)

    def _end(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        end_process(process, sig, STOP_TIMEOUT)

    def _answers_ping(self) -> bool:
        # A server still loading its AOF replies -LOADING, which is not ready either.
        with contextlib.suppress(OSError):
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        return False

    def _log_tail(self) -> str:
        if not self.log_file.exists():
            return "(no log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])


def start_redis_server(data_dir: Path, *, appendonly: bool = False) -> RedisServer:
    """Start redis-server on a free loopback port; ``appendonly`` keeps data across restarts."""
    return RedisServer(data_dir, appendonly=appendonly).start()
