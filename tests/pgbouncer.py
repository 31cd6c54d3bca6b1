"""A PgBouncer in transaction pooling mode in front of the test database.

:func:`start_pgbouncer` writes a ``pgbouncer.ini`` into a fresh directory,
starts ``pgbouncer`` (the Debian package, installed by
``scripts/_setup.sh``'s ``ensure_pgbouncer``) on a free loopback port and
adds a Django database alias, :data:`ALIAS`, that reaches the test database
through it; :meth:`PgBouncer.stop` removes both. The ``pgbouncer`` fixture in
``conftest.py`` runs it once per test session.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections

#: The Django alias that goes through PgBouncer.
ALIAS = "pgbouncer"
#: PgBouncer's server connections per database and user: every client
#: transaction runs on one of these few, as in production.
POOL_SIZE = 4
EXECUTABLE = os.environ.get("ASM_PGBOUNCER", "/usr/sbin/pgbouncer")

_INI = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/userlist.txt
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 500
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
admin_users = {user}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PgBouncer:
    """A running pgbouncer and the alias that uses it."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Close the alias's connections, stop pgbouncer (ending its server connections)."""
        connections[ALIAS].close()
        connections.settings.pop(ALIAS, None)
        settings.DATABASES.pop(ALIAS, None)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # immediate shutdown
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_pgbouncer() -> PgBouncer:
    """Start pgbouncer in front of the default alias's (test) database and add :data:`ALIAS`.

    Raises:
        RuntimeError: pgbouncer is missing or did not start (its log is in the message).
    """
    if not os.access(EXECUTABLE, os.X_OK):
        raise RuntimeError(
            f"{EXECUTABLE} is missing: run scripts/test.sh (ensure_pgbouncer installs the "
            "Debian package) or set ASM_PGBOUNCER"
        )
    upstream: dict[str, Any] = connections.settings["default"]
    directory = Path(tempfile.mkdtemp(prefix="asm-pgbouncer-"))
    directory.chmod(0o755)  # pgbouncer drops root privileges to the postgres user
    port = free_port()
    user = str(upstream["USER"] or "postgres")
    (directory / "userlist.txt").write_text(f'"{user}" ""\n')
    (directory / "pgbouncer.ini").write_text(
        _INI.format(
            host=upstream["HOST"] or "127.0.0.1",
            port=upstream["PORT"] or "5432",
            listen_port=port,
            directory=directory,
            pool_size=POOL_SIZE,
            user=user,
        )
    )
    command = [EXECUTABLE, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "postgres"]  # pgbouncer refuses to run as root
    log = (directory / "pgbouncer.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    bouncer = PgBouncer(port, directory, process)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                output = (directory / "pgbouncer.log").read_text(errors="replace")
                shutil.rmtree(directory, ignore_errors=True)
                raise RuntimeError(f"pgbouncer did not start: {output}") from None
            time.sleep(0.05)
    alias = dict(upstream)
    alias.update(
        HOST="127.0.0.1",
        PORT=str(port),
        CONN_MAX_AGE=0,
        # Behind a transaction pooler a server-side cursor outlives its server connection.
        DISABLE_SERVER_SIDE_CURSORS=True,
        # Same database as "default": Django creates, flushes and drops nothing through it.
        TEST={**upstream.get("TEST", {}), "MIRROR": "default"},
    )
    connections.settings[ALIAS] = alias
    settings.DATABASES[ALIAS] = alias
    return bouncer
