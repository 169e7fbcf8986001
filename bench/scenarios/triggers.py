"""triggers: messages per second that each kind of event source mapping delivers to the C echo.

For each queue kind — the embedded queue, Redis Streams, NATS JetStream,
RabbitMQ, MQTT, PostgreSQL changes — and batch size 1 and 10: a fresh Host on
a temporary data directory, the C echo deployed, a mapping with
``maximum_batching_window_ms`` 0. The mapping is started once so that it sets
up its consumer (group, durable consumer, persistent MQTT session, table
trigger), stopped, then N messages are written to the source while nobody
consumes, and the mapping is started again. Rate = messages acknowledged from
the first delivery to the last, over that time, read from the runner's own
counters every millisecond (when all of them were acknowledged between two
looks, from the runner's start instead, connection included). The echo returns its event, which has no
``batchItemFailures``: every message succeeds. Each figure is the median of
the repetitions (in alternating order of batch sizes). A source whose service
is not running is reported as skipped, with the reason.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from wasmhost import Host

from ..context import DIST, BenchContext
from ..stats import alternating, summarize

SIZES = {
    "tiny": {"messages": 100, "reps": 1, "mqtt_messages": 100},
    "quick": {"messages": 1000, "reps": 1, "mqtt_messages": 500},
    "full": {"messages": 3000, "reps": 3, "mqtt_messages": 900},
}
BATCH_SIZES = (1, 10)
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
TIMEOUT_S = 120.0


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Source:
    """One kind of source: make it, fill it, remove it."""

    kind: str
    port: int | None = None

    def __init__(self) -> None:
        self.name = f"bench-{self.kind}-{uuid.uuid4().hex[:8]}"

    def spec(self, batch_size: int) -> dict[str, Any]:
        raise NotImplementedError

    def setup(self, host: Host) -> None:
        pass

    def publish(self, host: Host, n: int) -> None:
        raise NotImplementedError

    def cleanup(self, host: Host) -> None:
        pass


class QueueSource(Source):
    kind = "queue"

    def spec(self, batch_size: int) -> dict[str, Any]:
        return {"type": "queue", "queue": self.name, "batch_size": batch_size}

    def setup(self, host: Host) -> None:
        host.queues.create(self.name)

    def publish(self, host: Host, n: int) -> None:
        from wasmhost.queues import OutgoingMessage

        for start in range(0, n, 10):
            batch = [OutgoingMessage(f'{{"i": {i}}}') for i in range(start, min(n, start + 10))]
            host.queues.send_batch(self.name, batch)


class RedisSource(Source):
    kind = "redis"
    port = 6379

    def spec(self, batch_size: int) -> dict[str, Any]:
        return {"type": "redis", "stream": self.name, "batch_size": batch_size, "start": "earliest"}

    def publish(self, host: Host, n: int) -> None:
        import redis

        client = redis.Redis()
        pipe = client.pipeline(transaction=False)
        for i in range(n):
            pipe.xadd(self.name, {"body": f'{{"i": {i}}}'})
        pipe.execute()
        client.close()

    def cleanup(self, host: Host) -> None:
        import redis

        redis.Redis().delete(self.name)


class NatsSource(Source):
    kind = "nats"
    port = 4222

    def spec(self, batch_size: int) -> dict[str, Any]:
        return {"type": "nats", "stream": self.name, "subjects": [f"{self.name}.>"], "batch_size": batch_size}

    def publish(self, host: Host, n: int) -> None:
        async def go() -> None:
            import nats

            nc = await nats.connect("nats://127.0.0.1:4222")
            js = nc.jetstream()
            pending = [js.publish(f"{self.name}.m", f'{{"i": {i}}}'.encode()) for i in range(n)]
            for start in range(0, n, 500):
                await asyncio.gather(*pending[start : start + 500])
            await nc.close()

        asyncio.run(go())

    def cleanup(self, host: Host) -> None:
        async def go() -> None:
            import nats

            nc = await nats.connect("nats://127.0.0.1:4222")
            try:
                await nc.jetstream().delete_stream(self.name)
            finally:
                await nc.close()

        asyncio.run(go())


class AmqpSource(Source):
    kind = "amqp"
    port = 5672

    def spec(self, batch_size: int) -> dict[str, Any]:
        return {"type": "amqp", "queue": self.name, "batch_size": batch_size}

    def publish(self, host: Host, n: int) -> None:
        async def go() -> None:
            import aio_pika

            connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                pending = [
                    channel.default_exchange.publish(
                        aio_pika.Message(f'{{"i": {i}}}'.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=self.name,
                    )
                    for i in range(n)
                ]
                for start in range(0, n, 500):
                    await asyncio.gather(*pending[start : start + 500])

        asyncio.run(go())

    def cleanup(self, host: Host) -> None:
        async def go() -> None:
            import aio_pika

            connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete(self.name)

        asyncio.run(go())


class MqttSource(Source):
    kind = "mqtt"
    port = 1883

    def spec(self, batch_size: int) -> dict[str, Any]:
        return {"type": "mqtt", "topics": [f"{self.name}/#"], "batch_size": batch_size}

    def publish(self, host: Host, n: int) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{self.name}-pub")
        client.connect("127.0.0.1", 1883)
        client.loop_start()
        infos = [client.publish(f"{self.name}/m", f'{{"i": {i}}}', qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(timeout=30)
        client.loop_stop()
        client.disconnect()


class PostgresSource(Source):
    kind = "postgres"
    port = 5432

    def spec(self, batch_size: int) -> dict[str, Any]:
        return {"type": "postgres", "dsn": PG_DSN, "table": self.table, "batch_size": batch_size}

    def __init__(self) -> None:
        super().__init__()
        self.table = self.name.replace("-", "_")

    def setup(self, host: Host) -> None:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {self.table} (id serial PRIMARY KEY, i int)")

    def publish(self, host: Host, n: int) -> None:
        import psycopg

        with psycopg.connect(PG_DSN) as conn:
            with conn.cursor() as cursor:
                cursor.executemany(f"INSERT INTO {self.table} (i) VALUES (%s)", [(i,) for i in range(n)])
            conn.commit()

    def cleanup(self, host: Host) -> None:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {self.table}")


SOURCES: tuple[type[Source], ...] = (QueueSource, RedisSource, NatsSource, AmqpSource, MqttSource, PostgresSource)


async def _until(check: Any, timeout_s: float, what: str, every_s: float = 0.005) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(every_s)


def deliver(source_type: type[Source], batch_size: int, n: int) -> dict[str, Any]:
    """One measurement: ``n`` messages through a fresh mapping of ``batch_size``."""
    source = source_type()
    with tempfile.TemporaryDirectory(prefix="wasmhost-bench-") as data, Host(Path(data)) as host:
        host.deploy("echo", (DIST / "echo.wasm").read_bytes())
        source.setup(host)
        try:
            trigger = host.add_trigger("echo", source.spec(batch_size))

            async def go() -> dict[str, Any]:
                supervisor = host.start_triggers(poll_s=0.05)
                await _until(
                    lambda: (host.trigger_store.get_state(trigger.id, "status") or {}).get("state") == "running",
                    30,
                    f"the {source.kind} mapping to connect",
                    every_s=0.05,
                )
                await host.stop_triggers()
                await asyncio.to_thread(source.publish, host, n)
                supervisor = host.start_triggers(poll_s=0.05)
                await _until(lambda: supervisor.runner(trigger.id) is not None, 30, "the runner", every_s=0.001)
                started = time.monotonic()
                runner: Any = supervisor.runner(trigger.id)
                first = await _until(lambda: runner.stats["succeeded"] > 0, TIMEOUT_S, "the first delivery", 0.001)
                first_count = runner.stats["succeeded"]
                last = await _until(lambda: runner.stats["succeeded"] >= n, TIMEOUT_S, f"{n} deliveries", 0.001)
                await host.stop_triggers()
                if first_count >= n or last <= first:  # all in one go: count from the runner's start
                    first, first_count = started, 0
                return {
                    "messages": n,
                    "seconds": round(last - first, 4),
                    "messages_per_s": round((n - first_count) / (last - first), 1),
                }

            return asyncio.run(go())
        finally:
            try:
                source.cleanup(host)
            except Exception:  # cleanup of a bench resource: never hides the figure
                pass


def run(ctx: BenchContext) -> dict[str, Any]:
    size = ctx.pick(SIZES)
    results: dict[str, Any] = {}
    for source_type in SOURCES:
        kind = source_type.kind
        if source_type.port is not None and not _listening(source_type.port):
            results[kind] = {"skipped": f"nothing listens on localhost:{source_type.port}"}
            ctx.progress(f"{kind}: skipped (service not running)")
            continue
        n = size["mqtt_messages"] if kind == "mqtt" else size["messages"]
        rates: dict[int, list[float]] = {b: [] for b in BATCH_SIZES}
        try:
            for rep in range(size["reps"]):
                for batch_size in alternating(BATCH_SIZES, rep):
                    figure = deliver(source_type, batch_size, n)
                    rates[batch_size].append(figure["messages_per_s"])
                    ctx.progress(f"{kind} batch {batch_size}: {figure['messages_per_s']} msgs/s")
        except Exception as error:  # a source that fails is reported, the others still run
            results[kind] = {"error": f"{type(error).__name__}: {error}"}
            ctx.progress(f"{kind}: failed: {error}")
            continue
        results[kind] = {"messages": n, **{f"batch_{b}": summarize(rates[b]) for b in BATCH_SIZES}}
    return {"rates": results}
