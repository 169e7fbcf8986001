"""Triggers: what invokes a function when something happens.

Each type is one module here that turns an outside event into a Lambda-shaped
event and calls ``Host.ainvoke`` (or queues it with ``ainvoke_event``):

============  =======================  ============================================
type          module                   event
============  =======================  ============================================
``http``      ``http_routes.py``       API Gateway HTTP API, payload format 2.0
``schedule``  ``schedule.py``          EventBridge ``Scheduled Event``
``bucket``    ``bucket.py``            S3 notification (``Records[].s3``)
``queue``     ``queue.py``             SQS batch, embedded queue (``queues/``)
``redis``     ``redis_streams.py``     SQS-shaped batch from a Redis Stream group
``nats``      ``nats_jetstream.py``    SQS-shaped batch from a JetStream consumer
``amqp``      ``amqp.py``              SQS-shaped batch from a RabbitMQ queue
``mqtt``      ``mqtt.py``              SQS-shaped batch from MQTT topics (QoS 1)
``postgres``  ``postgres.py``          DynamoDB-Streams-like change records
============  =======================  ============================================

A module defines ``TYPE``, an instance of a ``TriggerType`` subclass. They are
imported when first used, so a broker's client library is loaded only by hosts
that have such a trigger.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import InvalidConfig
from .base import Runner, TriggerContext, TriggerType
from .store import Trigger, TriggerStore

#: type name -> module under wasmhost.triggers
MODULES = {
    "http": "http_routes",
    "schedule": "schedule",
    "bucket": "bucket",
    "queue": "queue",
    "redis": "redis_streams",
    "nats": "nats_jetstream",
    "amqp": "amqp",
    "mqtt": "mqtt",
    "postgres": "postgres",
}
TYPES = tuple(MODULES)


def trigger_type(name: str) -> TriggerType:
    """The ``TriggerType`` called ``name``; ``InvalidConfig`` naming the known types."""
    module = MODULES.get(name) if isinstance(name, str) else None
    if module is None:
        raise InvalidConfig(f"trigger type must be one of {', '.join(TYPES)}, got {name!r}")
    loaded = importlib.import_module(f"{__name__}.{module}")
    return loaded.TYPE  # type: ignore[no-any-return]


def validate(spec: Any) -> tuple[TriggerType, dict[str, Any]]:
    """``{"type": ..., fields...}`` -> its type and the checked, completed fields."""
    if not isinstance(spec, dict):
        raise InvalidConfig(f"a trigger is a JSON object with a 'type' ({', '.join(TYPES)}), got {spec!r}")
    fields = dict(spec)
    kind = trigger_type(fields.pop("type", None))
    for key in ("id", "function", "origin", "created_at", "status"):
        fields.pop(key, None)  # read-only fields of a trigger as listed: accepted back, ignored
    return kind, kind.validate(fields)


__all__ = [
    "MODULES",
    "TYPES",
    "Runner",
    "Trigger",
    "TriggerContext",
    "TriggerStore",
    "TriggerType",
    "trigger_type",
    "validate",
]
