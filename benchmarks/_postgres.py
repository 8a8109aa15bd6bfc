"""A throwaway PostgreSQL server on 127.0.0.1 for the tests and the fault-injection benchmark:
``with ThrowawayPostgres() as pg: pg.url ... pg.restart()``. Debian's server binaries; as root, the
server runs as the 'postgres' user (it refuses root)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class Unavailable(RuntimeError):
    """What is missing to start a server here (the tests skip with it)."""


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ThrowawayPostgres:
    def __init__(self) -> None:
        pg_bin = Path("/usr/lib/postgresql/15/bin")
        initdb = shutil.which("initdb") or (str(pg_bin / "initdb") if (pg_bin / "initdb").exists() else None)
        if initdb is None:
            raise Unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
        self.initdb, self.pg_ctl = initdb, shutil.which("pg_ctl") or str(Path(initdb).with_name("pg_ctl"))
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no 'postgres' user to run a PostgreSQL server as")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.base = self.data = None
        self.port = free_port()
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/mbnas"

    def _run(self, *cmd: str) -> None:
        p = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=120, cwd=self.base)
        if p.returncode != 0:
            raise RuntimeError(f"{cmd[0]}: {p.stdout[-1500:]} {p.stderr[-1500:]}")

    def start(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.base / "server.log"), "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "immediate") -> None:
        subprocess.run([*self.as_user, self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"],
                       capture_output=True, timeout=60, cwd=self.base)

    def restart(self) -> None:
        """An abrupt restart (immediate stop: connections cut, as a crashed or failed-over server)."""
        self.stop()
        self.start()

    def __enter__(self) -> "ThrowawayPostgres":
        self.base = Path(tempfile.mkdtemp(prefix="mbnas-pg-"))
        self.data = self.base / "data"
        if self.as_user:
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE mbnas")
        conn.close()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
