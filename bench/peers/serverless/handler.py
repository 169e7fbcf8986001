"""The echo as a Lambda handler: parse the JSON event body and answer it back.

Behind an HTTP API (payload 2.0) route, a handler result without ``statusCode`` is
sent as a 200 ``application/json`` response whose body is the result as JSON.
"""

import json


def handler(event, context):
    return json.loads(event["body"])
