"""
A throw-away Redis (Debian's ``redis-server``) on a free loopback port: the store of the fleet's
shared Sheets quota and the CeleryExecutor's broker in the tests and the fleet benchmark. Nothing
is persisted (no RDB snapshot, no append-only file).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from airflow_provider_sheets.devkit.broker_process import free_port, stop_process

log = logging.getLogger(__name__)

#: where Debian's package puts the server
REDIS_SERVER = "redis-server"


def redis_available() -> bool:
    return shutil.which(REDIS_SERVER) is not None


class RedisServer:
    """
    :param port: 0 picks a free one.
    :param log_path: where the server's output goes (default: discarded).
    """

    def __init__(self, port: int = 0, log_path: str | os.PathLike[str] | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    @property
    def version(self) -> str:
        out = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True, check=False).stdout
        fields = dict(part.split("=", 1) for part in out.split() if "=" in part)
        return f"Redis {fields.get('v', '?')}"

    def start(self, timeout: float = 30.0) -> RedisServer:
        binary = shutil.which(REDIS_SERVER)
        if binary is None:
            raise RuntimeError(f"{REDIS_SERVER} is not installed (Debian: apt-get install redis-server)")
        workdir = Path(self.log_path).parent if self.log_path else Path.cwd()
        command = [binary, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no"]
        command += ["--dir", str(workdir), "--protected-mode", "no"]
        with open(self.log_path or os.devnull, "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self.process.returncode}; see {self.log_path}")
            if self._answers():
                log.info("%s (pid %s) listening on %s", self.version, self.process.pid, self.url())
                return self
            time.sleep(0.05)
        self.stop(kill=True)
        raise TimeoutError(f"redis-server did not answer on {self.host}:{self.port} within {timeout:.0f} s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        stop_process(self.process, kill, timeout=10)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
