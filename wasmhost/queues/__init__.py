"""The embedded durable queues (SQS-like), in SQLite (WAL): ``<data_dir>/queues.db``.

One file shared by every process on a data directory. A queue is a row of
``queues`` (its attributes); a message is a row of ``messages`` from ``send``
until it is deleted, purged, expires or moves to its dead-letter queue.

SQS's model, kept as is:

* a received message stays in the queue, invisible for the visibility timeout,
  with a fresh receipt handle. Deleting it needs that handle; once the message
  is received again, the old handle is stale (``ReceiptHandleIsInvalid``);
* each receive counts (``ApproximateReceiveCount``). With a redrive policy, a
  message that would be received more than ``max_receive_count`` times moves to
  the dead-letter queue instead, in the receiving transaction;
* ``delay_s`` (the queue's, or the message's) hides a new message for a while;
  ``message_retention_s`` deletes it, received or not, that long after it was sent.

Durability: sends, batch sends, queue creation and deletion commit with
``synchronous=FULL`` (the WAL is fsynced before they return), so an
acknowledged message survives power loss. Receives, deletes and visibility
changes commit with ``synchronous=NORMAL``: losing one to power loss brings back
the state before it (a message is delivered again), never loses one.

Long polling: ``receive``/``areceive`` with ``wait_time_s`` return as soon as a
message is visible. A send through this ``QueueStore`` wakes them at once; a
send by another process (or another ``QueueStore``) is seen within ``poll_s``
(``POLL_S``, 50 ms). Between looks, an asynchronous receiver only asks SQLite
whether the file changed (``PRAGMA data_version``), so an idle one costs nearly nothing.

The modules, along a message's way: ``validation`` (what is accepted: SQS's limits,
names, attributes, messages), ``schema`` (the tables, a queue's row and counts),
``messages`` (a message to send, one received), ``store`` (``QueueStore``: queues,
sending, deleting, visibility), ``receiving`` (the receive transaction, redrive,
receipt handles) and ``polling`` (the waiting of long polls, wake-ups).
"""

from .messages import OutgoingMessage, ReceivedMessage, arn
from .store import QueueStore
from .validation import MAX_RECEIVE, MAX_VISIBILITY_S, MAX_WAIT_S, check_queue_name

__all__ = [
    "MAX_RECEIVE",
    "MAX_VISIBILITY_S",
    "MAX_WAIT_S",
    "OutgoingMessage",
    "QueueStore",
    "ReceivedMessage",
    "arn",
    "check_queue_name",
]
