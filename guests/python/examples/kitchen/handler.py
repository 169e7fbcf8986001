"""One Python function with many behaviours, chosen by event["action"] (for tests and demos)."""

import os
import time

from textutil import shout  # a package in the function's folder, bundled by the build

calls = 0  # module-level state: must start from scratch on every invocation


def handler(event, context):
    global calls
    calls += 1
    action = event.get("action", "echo")
    if action == "echo":
        return event
    if action == "counter":
        return calls
    if action == "context":
        return {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "invoked_function_arn": context.invoked_function_arn,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
        }
    if action == "raise":
        raise ValueError(f"bad value: {event.get('value')}")
    if action == "spin":
        while True:
            pass
    if action == "sleep":
        time.sleep(event.get("seconds", 1))
        return "slept"
    if action == "bomb":
        hoard = []
        while True:
            hoard.append(bytearray(1024 * 1024))
    if action == "env":
        return dict(os.environ)
    if action == "read":
        with open(event["path"]) as f:
            return f.read()
    if action == "shout":
        return shout(event["text"])
    raise KeyError(f"unknown action {action!r}")
