"""A function for trying triggers: it logs what it receives and fails on request.

- An SQS-shaped batch (``Records`` with ``messageId``): prints one line per record,
  ``processed <eventSource> <body>``, sleeps ``sleep_ms`` when the body is JSON
  asking for it, and reports as failed (``batchItemFailures``) every record whose
  body is listed in the ``FAIL_BODIES`` environment variable (comma-separated) or
  is JSON with ``"fail": true``.
- Any other event: prints ``event <json>`` and returns the event.
- ``FAIL_ALL=1`` in the environment: raises instead (the whole batch fails).
"""

import json
import os
import time


def handler(event, context):
    if os.environ.get("FAIL_ALL") == "1":
        raise RuntimeError("FAIL_ALL is set")
    records = event.get("Records") if isinstance(event, dict) else None
    if not records or not isinstance(records[0], dict) or "messageId" not in records[0]:
        print("event " + json.dumps(event, sort_keys=True))
        return event
    fail_bodies = set(filter(None, os.environ.get("FAIL_BODIES", "").split(",")))
    failures = []
    for record in records:
        body = record["body"]
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("sleep_ms"):
            time.sleep(data["sleep_ms"] / 1000)
        failed = body in fail_bodies or (isinstance(data, dict) and data.get("fail") is True)
        print(("failed " if failed else "processed ") + record["eventSource"] + " " + body)
        if failed:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
