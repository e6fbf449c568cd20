"""Look a user up in MariaDB (``users`` table) with a parameterised query and short timeouts.

Expected columns (the MariaDB role creates them): ``username`` (unique), ``email``,
``source_language``, ``target_language``, ``voice``, ``enabled`` (0/1), ``processor``
(NULL, ``passthrough`` or ``speaqr``; migration 0002).
"""

import contextlib
import importlib
import logging
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any

from speaqr_sip.config import DatabaseConfig
from speaqr_sip.validation import UserRow

if TYPE_CHECKING:
    import pymysql
    import pymysql.connections

logger = logging.getLogger(__name__)


def _driver() -> ModuleType:
    """PyMySQL, imported on first use: the plain AGI script skips it for early refusals."""
    return importlib.import_module("pymysql")


USER_QUERY = (
    "SELECT username, email, source_language, target_language, voice, enabled, processor "
    "FROM users WHERE username = %s LIMIT 1"
)


class DatabaseUnavailable(Exception):
    """The database could not be reached or the query failed."""


def row_from_record(record: dict[str, Any]) -> UserRow:
    def text(key: str) -> str:
        value = record.get(key)
        if value is None:
            return ""
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return str(value)

    enabled = record.get("enabled")
    return UserRow(
        username=text("username"),
        email=text("email"),
        source_language=text("source_language"),
        target_language=text("target_language"),
        voice=text("voice"),
        enabled=bool(int(enabled)) if enabled is not None else False,
        processor=text("processor"),
    )


class UserDirectory:
    """Users by username. With ``keep_connection`` one connection is reused (thread-safe)."""

    def __init__(self, config: DatabaseConfig, *, keep_connection: bool = False) -> None:
        self._config = config
        self._keep = keep_connection
        self._lock = threading.Lock()
        self._conn: pymysql.connections.Connection[Any] | None = None

    def _connect(self) -> "pymysql.connections.Connection[Any]":
        driver = _driver()
        importlib.import_module("pymysql.cursors")
        cfg = self._config
        kwargs: dict[str, Any] = {
            "user": cfg.user,
            "password": cfg.password,
            "database": cfg.name,
            "connect_timeout": cfg.connect_timeout,
            "read_timeout": cfg.read_timeout,
            "write_timeout": cfg.read_timeout,
            "charset": "utf8mb4",
            "cursorclass": driver.cursors.DictCursor,
            "autocommit": True,
        }
        if cfg.unix_socket:
            kwargs["unix_socket"] = cfg.unix_socket
        else:
            kwargs["host"] = cfg.host
            kwargs["port"] = cfg.port
        conn: pymysql.connections.Connection[Any] = driver.connect(**kwargs)
        return conn

    def _query(self, conn: "pymysql.connections.Connection[Any]", username: str) -> UserRow | None:
        with conn.cursor() as cursor:
            cursor.execute(USER_QUERY, (username,))
            record = cursor.fetchone()
        return None if record is None else row_from_record(record)

    def lookup(self, username: str) -> UserRow | None:
        """Return the user's row, ``None`` if absent; raise :class:`DatabaseUnavailable`."""
        driver = _driver()
        if not self._keep:
            try:
                conn = self._connect()
            except driver.MySQLError as exc:
                raise DatabaseUnavailable(f"connect failed: {exc.__class__.__name__}") from exc
            try:
                return self._query(conn, username)
            except driver.MySQLError as exc:
                raise DatabaseUnavailable(f"query failed: {exc.__class__.__name__}") from exc
            finally:
                conn.close()
        with self._lock:
            return self._lookup_reusing(username)

    def _lookup_reusing(self, username: str) -> UserRow | None:
        driver = _driver()
        if self._conn is not None:
            try:
                return self._query(self._conn, username)
            except driver.MySQLError as exc:
                # The kept connection may have been closed by the server: retry once, fresh.
                logger.debug("kept database connection failed (%s)", exc.__class__.__name__)
                self._drop()
        try:
            self._conn = self._connect()
        except driver.MySQLError as exc:
            raise DatabaseUnavailable(f"connect failed: {exc.__class__.__name__}") from exc
        try:
            return self._query(self._conn, username)
        except driver.MySQLError as exc:
            self._drop()
            raise DatabaseUnavailable(f"query failed: {exc.__class__.__name__}") from exc

    def _drop(self) -> None:
        driver = _driver()
        if self._conn is not None:
            with contextlib.suppress(driver.MySQLError):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()
