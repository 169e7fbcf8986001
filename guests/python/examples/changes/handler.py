"""A function for trying the ``postgres`` trigger: it logs each change and fails on request.

- A batch of change records (``Records`` with ``eventSource`` ``wasmhost:postgres``):
  prints ``batch <sequenceNumber>,...``, then one line per record, ``change <the
  record as JSON, sorted keys>``; sleeps ``sleep_ms`` when the row (new, else old)
  has that column set; reports as failed (``batchItemFailures``, ``itemIdentifier``
  = ``sequenceNumber``) every record whose row has ``fail`` true.
- ``FAIL_ALL=1`` in the environment: raises instead (the whole batch fails).
- Any other event: prints ``event <json>`` and returns the event.
"""

import json
import os
import time


def handler(event, context):
    records = event.get("Records") if isinstance(event, dict) else None
    if not records or not isinstance(records[0], dict) or "postgres" not in records[0]:
        print("event " + json.dumps(event, sort_keys=True))
        return event
    if os.environ.get("FAIL_ALL") == "1":
        raise RuntimeError("FAIL_ALL is set")
    print("batch " + ",".join(record["postgres"]["sequenceNumber"] for record in records))
    failures = []
    for record in records:
        change = record["postgres"]
        row = change["new"] if change["new"] is not None else change["old"]
        if row.get("sleep_ms"):
            time.sleep(row["sleep_ms"] / 1000)
        print("change " + json.dumps(record, sort_keys=True))
        if row.get("fail") is True:
            failures.append({"itemIdentifier": change["sequenceNumber"]})
    return {"batchItemFailures": failures}
