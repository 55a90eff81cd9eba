"""A throwaway PostgreSQL server for the catalog tests: a fresh data dir, a unix socket
in a private directory and no TCP listener at all, password (SCRAM) authentication.
PostgreSQL refuses to run as root, so under root it runs as the `postgres` user."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

ROLE = "imgpipe"


def server_binaries() -> Path:
    """The newest installed server's bin dir (Debian keeps it off PATH)."""
    found = sorted(
        Path(p).parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb") if Path(p).is_file()
    )
    if not found:
        raise RuntimeError("PostgreSQL (Debian's postgresql) is not installed: run them with ./run tests")
    return max(found, key=lambda p: int(p.parent.name))


@dataclass
class PostgresServer:
    root: Path  # owned by the server's user; holds data/, the socket and the log
    process: subprocess.Popen[bytes]
    superuser_password: str
    password: str  # of ROLE, which owns every database made by new_database()
    _names: count[int] = field(default_factory=lambda: count(1))

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def new_database(self) -> str:
        """A fresh, empty database owned by ROLE; its SQLAlchemy URL (password included)."""
        name = f"catalog_{next(self._names)}"
        with self._superuser() as conn:
            create = sql.SQL("CREATE DATABASE {} OWNER {}")
            conn.execute(create.format(sql.Identifier(name), sql.Identifier(ROLE)))
        return self.url(name, self.password)

    def url(self, database: str, password: str) -> str:
        return URL.create(
            "postgresql+psycopg",
            username=ROLE,
            password=password,
            database=database,
            query={"host": str(self.socket_dir)},
        ).render_as_string(hide_password=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def _superuser(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=str(self.socket_dir),
            user="postgres",
            password=self.superuser_password,
            dbname="postgres",
            autocommit=True,
        )


def start_postgres(timeout: float = 60) -> PostgresServer:
    bin_dir = server_binaries()
    root = Path(tempfile.mkdtemp(prefix="imgpipe-pg-"))  # in /tmp: the postgres user must reach it
    as_user = _server_user()
    superuser_password, password = secrets.token_hex(16), f"pw-{secrets.token_hex(12)}@:/%"
    try:
        (root / "socket").mkdir()
        pwfile = root / "superuser-password"
        pwfile.write_text(superuser_password + "\n")
        pwfile.chmod(0o600)
        if as_user:
            for path in (root, root / "socket", pwfile):
                os.chown(path, as_user.pw_uid, as_user.pw_gid)
        _run_as(
            as_user,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(root / "data"),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            root,
        )
        pwfile.unlink()
        with open(root / "data" / "postgresql.conf", "a") as conf:
            conf.write(
                "listen_addresses = ''\n"  # no TCP/IP at all: the unix socket below only
                f"unix_socket_directories = '{root / 'socket'}'\n"
                "unix_socket_permissions = 0700\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        with open(root / "server.log", "wb") as log:
            process = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(root / "data")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=root, env=_env(as_user, root), **_user_args(as_user),
            )  # fmt: skip
        server = PostgresServer(root, process, superuser_password, password)
        _wait_ready(server, timeout)
        with server._superuser() as conn:
            create = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}")
            conn.execute(create.format(sql.Identifier(ROLE), sql.Literal(password)))
    except BaseException:
        if "server" in locals():
            server.stop()
        else:
            shutil.rmtree(root, ignore_errors=True)
        raise
    return server


def _wait_ready(server: PostgresServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"postgres exited: {(server.root / 'server.log').read_text()[-2000:]}")
        try:
            server._superuser().close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _server_user() -> pwd.struct_passwd | None:
    """The user the server runs as: `postgres` under root, else whoever runs the tests."""
    return pwd.getpwnam("postgres") if os.geteuid() == 0 else None


def _user_args(user: pwd.struct_passwd | None) -> dict[str, Any]:
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}


def _env(user: pwd.struct_passwd | None, root: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), "LC_ALL": "C"}


def _run_as(user: pwd.struct_passwd | None, argv: list[str], root: Path) -> None:
    proc = subprocess.run(
        argv, cwd=root, env=_env(user, root), capture_output=True, text=True, check=False, **_user_args(user)
    )
    if proc.returncode:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
