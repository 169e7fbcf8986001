"""Receiving, inside the store's write transaction: expired messages go, messages over
their redrive policy's ``max_receive_count`` move to the dead-letter queue, the others
are hidden for the visibility timeout with a fresh receipt handle. And the way back:
reading a receipt handle, and saying why one is refused."""

from __future__ import annotations

import json
import logging
import re
import secrets
import sqlite3
from collections.abc import Sequence

from .messages import ReceivedMessage
from .schema import load, require

log = logging.getLogger("wasmhost.queues")

RECEIPT = re.compile(r"^([0-9]{1,19})\.([0-9a-f]{24})$")


def take(
    conn: sqlite3.Connection, queue: str, max_messages: int, visibility_timeout_s: float | None, now: float
) -> tuple[list[ReceivedMessage], str | None]:
    """The messages received (up to ``max_messages``) and, if some moved there, the dead-letter
    queue to wake. Runs in the caller's write transaction on ``conn``."""
    settings = require(conn, queue)[0]
    conn.execute("DELETE FROM messages WHERE queue = ? AND expires_at <= ?", (queue, now))
    visibility = settings["visibility_timeout_s"] if visibility_timeout_s is None else visibility_timeout_s
    max_receives = settings.get("max_receive_count")
    dead_letter_queue = settings.get("dead_letter_queue")
    dead_found = load(conn, dead_letter_queue)
    dead_settings = dead_found[0] if dead_found is not None else None
    if dead_letter_queue and dead_settings is None:
        log.warning("queue %s: its dead-letter queue %s does not exist; messages stay", queue, dead_letter_queue)
    received: list[ReceivedMessage] = []
    done: set[int] = set()
    moved = 0
    while len(received) < max_messages:
        rows = conn.execute(
            """SELECT seq, message_id, body, message_attributes, sent_at, receive_count, first_received_at,
                 dead_letter_source FROM messages WHERE queue = ? AND visible_at <= ?
               ORDER BY visible_at, seq LIMIT ?""",
            (queue, now, max_messages - len(received) + len(done)),
        ).fetchall()
        fresh = [row for row in rows if row[0] not in done]
        if not fresh:
            break
        for seq, message_id, body, raw_attributes, sent_at, count, first_received_at, source in fresh:
            done.add(seq)
            if dead_settings is not None and max_receives is not None and count >= max_receives:
                # Received max_receive_count times and never deleted: to the dead-letter queue (as SQS).
                conn.execute(
                    """INSERT INTO messages (queue, message_id, body, message_attributes, sent_at, visible_at,
                         expires_at, dead_letter_source)
                       SELECT ?, message_id, body, message_attributes, sent_at, ?, sent_at + ?, ?
                       FROM messages WHERE seq = ?""",
                    (dead_letter_queue, now, dead_settings["message_retention_s"], queue, seq),
                )
                conn.execute("DELETE FROM messages WHERE seq = ?", (seq,))
                moved += 1
                continue
            secret = secrets.token_hex(12)
            first = first_received_at if first_received_at is not None else now
            conn.execute(
                """UPDATE messages SET receive_count = receive_count + 1, visible_at = ?, receipt = ?,
                     first_received_at = ? WHERE seq = ?""",
                (now + visibility, secret, first, seq),
            )
            received.append(
                ReceivedMessage(
                    message_id=message_id,
                    receipt_handle=f"{seq}.{secret}",
                    body=body,
                    receive_count=count + 1,
                    sent_at=sent_at,
                    first_received_at=first,
                    message_attributes=json.loads(raw_attributes) if raw_attributes else {},
                    dead_letter_source=source,
                )
            )
            if len(received) == max_messages:
                break
    if moved:
        log.info("queue %s: %d message(s) moved to dead-letter queue %s", queue, moved, dead_letter_queue)
    return received, dead_letter_queue if moved else None


def parse_handles(handles: Sequence[str]) -> tuple[dict[str, tuple[int, str]], dict[str, str]]:
    parsed, refused = {}, {}
    for handle in handles:
        match = RECEIPT.match(handle) if isinstance(handle, str) else None
        if match is None:
            refused[handle] = f"receipt handle {handle!r} is not one this queue store gave out"
        else:
            parsed[handle] = (int(match.group(1)), match.group(2))
    return parsed, refused


def stale(handle: str, current: str | None) -> str:
    if current is None:
        return f"receipt handle {handle!r} is not valid: the message is not received now"
    return f"receipt handle {handle!r} has expired: the message was received again since (use the newest handle)"
