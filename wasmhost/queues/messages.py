"""The messages of the embedded queues as callers see them: one to send, one as received
(with SQS's system attributes and the shape of its HTTP answer), and a queue's ARN."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


def arn(queue: str) -> str:
    """The queue's ARN, as in SQS's event records."""
    return f"arn:aws:sqs:local:000000000000:{queue}"


@dataclass(frozen=True)
class OutgoingMessage:
    """A message to send: its body, message attributes and delay (None: the queue's ``delay_s``)."""

    body: str
    message_attributes: dict[str, Any] | None = None
    delay_s: float | None = None


@dataclass(frozen=True)
class ReceivedMessage:
    """A message as received. Times are Unix seconds; ``receive_count`` includes this receive."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_at: float
    first_received_at: float
    message_attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    #: In a dead-letter queue: the queue the message came from.
    dead_letter_source: str | None = None

    @property
    def md5_of_body(self) -> str:
        return hashlib.md5(self.body.encode()).hexdigest()

    def attributes(self) -> dict[str, str]:
        """SQS's system attributes (strings; timestamps in epoch milliseconds)."""
        values = {
            "ApproximateReceiveCount": str(self.receive_count),
            "SentTimestamp": str(int(self.sent_at * 1000)),
            "ApproximateFirstReceiveTimestamp": str(int(self.first_received_at * 1000)),
            "SenderId": "wasmhost",
        }
        if self.dead_letter_source is not None:
            values["DeadLetterQueueSourceArn"] = arn(self.dead_letter_source)
        return values

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "receipt_handle": self.receipt_handle,
            "body": self.body,
            "md5_of_body": self.md5_of_body,
            "attributes": self.attributes(),
            "message_attributes": self.message_attributes,
        }
