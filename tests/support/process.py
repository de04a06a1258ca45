"""Helpers for the servers tests start themselves: free loopback ports and stopping processes."""

from __future__ import annotations

import signal
import socket
import subprocess


def free_port() -> int:
    """Return a loopback port nothing listens on now (another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def end_process(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    """Send ``sig`` and wait up to ``timeout`` seconds, then SIGKILL what is still running."""
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
