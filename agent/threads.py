"""Conversation threads: the LangGraph checkpointer that keeps a thread's earlier questions and answers.

SQLite under the data folder by default; Postgres when `checkpoint_postgres_url` is set (the
`postgres` extra: `pip install 'pathorag[postgres]'`). Threads store questions and answers: they
hold patient data and belong under the same protection as the index.
"""

from __future__ import annotations

import sqlite3

from langgraph.checkpoint.base import BaseCheckpointSaver

from agent.errors import AgentConfigError
from agent.settings import AgentSettings

SQLITE_FILE = "threads.sqlite"


class Threads:
    """An open checkpointer and the connection behind it."""

    def __init__(self, saver: BaseCheckpointSaver, connection) -> None:
        self.saver = saver
        self._connection = connection

    def close(self) -> None:
        self._connection.close()


def open_threads(settings: AgentSettings) -> Threads:
    if settings.checkpoint_postgres_url is not None:
        return _open_postgres(settings.checkpoint_postgres_url.get_secret_value())
    from langgraph.checkpoint.sqlite import SqliteSaver

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # One connection shared by the server's threads; SqliteSaver serialises access with its own lock.
    connection = sqlite3.connect(settings.data_dir / SQLITE_FILE, check_same_thread=False)
    saver = SqliteSaver(connection)
    saver.setup()
    return Threads(saver, connection)


def _open_postgres(url: str) -> Threads:
    try:
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg import Connection
        from psycopg.rows import dict_row
    except ImportError:
        raise AgentConfigError(
            "checkpoint_postgres_url is set but the Postgres checkpointer is not installed: "
            "pip install 'pathorag[postgres]'"
        ) from None
    connection = Connection.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row)
    saver = PostgresSaver(connection)
    saver.setup()
    return Threads(saver, connection)
