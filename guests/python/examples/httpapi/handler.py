"""A function behind HTTP routes (``http`` triggers): API Gateway's payload format 2.0.

``GET /hello/{name}`` answers ``{"message": "hello <name>"}`` (a plain object:
the host answers 200 JSON). Any other request answers by its ``do`` query
parameter, to show (and test) how return values map to HTTP answers:

- ``echo`` (the default): the event itself, as JSON;
- ``custom``: a full response: status ``status`` (201), a header, two cookies, a text body;
- ``binary``: the request body back as binary (``isBase64Encoded``), with the request's content type;
- ``text``: a plain string (API Gateway answers it as JSON: quoted);
- ``raise``: raises (the caller gets 502);
- ``invalid``: a response API Gateway cannot map (the caller gets 502);
- ``sleep``: sleeps ``ms`` milliseconds, then echoes.
"""

import base64
import time


def handler(event, context):
    params = event.get("pathParameters") or {}
    if event.get("routeKey") == "GET /hello/{name}":
        return {"message": "hello " + params["name"]}
    query = event.get("queryStringParameters") or {}
    do = query.get("do", "echo")
    if do == "echo":
        return event
    if do == "custom":
        return {
            "statusCode": int(query.get("status", "201")),
            "headers": {"content-type": "text/plain; charset=utf-8", "x-custom": "yes"},
            "cookies": ["session=abc; Path=/; HttpOnly", "theme=dark"],
            "body": "created " + event["requestContext"]["requestId"],
        }
    if do == "binary":
        body = event.get("body", "")
        if not event["isBase64Encoded"]:
            body = base64.b64encode(body.encode()).decode()
        return {
            "statusCode": 200,
            "headers": {"content-type": event["headers"].get("content-type", "application/octet-stream")},
            "body": body,
            "isBase64Encoded": True,
        }
    if do == "text":
        return "hello"
    if do == "raise":
        raise RuntimeError("asked to fail")
    if do == "invalid":
        return {"statusCode": 200, "body": {"not": "a string"}}
    if do == "sleep":
        time.sleep(int(query.get("ms", "100")) / 1000)
        return event
    return {"statusCode": 400, "body": "unknown do=" + do}
