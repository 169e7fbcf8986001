"""The embedded bucket store over HTTP, S3's paths in JSON. Guarded like the management API.

=====================================  ==================================================
``GET /buckets``                       ``{"buckets": [{"name", "created_at"}]}``
``PUT /buckets/{bucket}``              create (201); 409 ``BucketAlreadyExists``
``DELETE /buckets/{bucket}``           delete (204); 409 ``BucketNotEmpty``
``GET /buckets/{bucket}``              list: ``prefix``, ``start_after``, ``max_keys``
``PUT /buckets/{bucket}/{key}``        write the body; ``Content-Type`` and
                                       ``x-amz-meta-*`` headers kept; 413 over the limit
``GET``/``HEAD /buckets/{bucket}/{key}``  the bytes with ``Content-Type``, ``Content-Length``,
                                       ``ETag``, ``Last-Modified``, ``x-amz-meta-*``
``DELETE /buckets/{bucket}/{key}``     delete (204, also when there was none, as S3)
=====================================  ==================================================

Keys are read from the raw path, percent-decoded as UTF-8: they may hold slashes
(``/buckets/b/a/b.txt`` is key ``a/b.txt``) and any escaped character.
"""

from __future__ import annotations

import email.utils
import urllib.parse
from collections.abc import Callable, Iterator
from typing import IO, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..buckets import MAX_LIST_KEYS, BucketStore, ObjectInfo, check_key, new_request_id
from ..errors import EntityTooLarge, InvalidObjectKey, InvalidRequest, WasmhostError
from ..host import Host
from .management import json_response

PREFIX = "/buckets/"
META_PREFIX = "x-amz-meta-"
#: Bytes of a request body gathered before they are written to the upload file (on a thread).
WRITE_CHUNK = 1024 * 1024
READ_CHUNK = 256 * 1024


def routes(host: Host, guard: Callable[[Any], Any]) -> list[Route]:
    api = BucketsApi(host)
    return [
        Route("/buckets", guard(api.list_buckets), methods=["GET"]),
        Route("/buckets/{bucket}", guard(api.create_bucket), methods=["PUT"]),
        Route("/buckets/{bucket}", guard(api.list_objects), methods=["GET"]),
        Route("/buckets/{bucket}", guard(api.delete_bucket), methods=["DELETE"]),
        Route("/buckets/{bucket}/{key:path}", guard(api.put_object), methods=["PUT"]),
        Route("/buckets/{bucket}/{key:path}", guard(api.head_object), methods=["HEAD"]),
        Route("/buckets/{bucket}/{key:path}", guard(api.get_object), methods=["GET"]),
        Route("/buckets/{bucket}/{key:path}", guard(api.delete_object), methods=["DELETE"]),
    ]


class BucketsApi:
    def __init__(self, host: Host) -> None:
        self.host = host

    @property
    def store(self) -> BucketStore:
        """The host's bucket store, opened on first use. Read on the event loop's thread
        (never in the thread pool), so that two requests cannot both open it."""
        return self.host.buckets

    async def list_buckets(self, request: Request) -> Response:
        buckets = await run_in_threadpool(self.store.list_buckets)
        return json_response({"buckets": [b.to_dict() for b in buckets]})

    async def create_bucket(self, request: Request) -> Response:
        info = await run_in_threadpool(self.store.create_bucket, request.path_params["bucket"])
        return json_response(info.to_dict(), 201)

    async def delete_bucket(self, request: Request) -> Response:
        await run_in_threadpool(self.store.delete_bucket, request.path_params["bucket"])
        return Response(status_code=204)

    async def list_objects(self, request: Request) -> Response:
        bucket = request.path_params["bucket"]
        query = request.query_params
        unknown = sorted(set(query) - {"prefix", "start_after", "max_keys"})
        if unknown:
            raise InvalidRequest(
                f"unknown query parameter(s) {', '.join(unknown)} (allowed: prefix, start_after, max_keys)"
            )
        raw = query.get("max_keys") or str(MAX_LIST_KEYS)
        try:
            max_keys = int(raw)
        except ValueError:
            raise InvalidRequest(f"max_keys must be an integer from 1 to {MAX_LIST_KEYS}, got {raw!r}") from None
        prefix, start_after = query.get("prefix", ""), query.get("start_after", "")
        page = await run_in_threadpool(self.store.list_objects, bucket, prefix, start_after, max_keys)
        return json_response(
            {
                "bucket": bucket,
                "prefix": prefix,
                "start_after": start_after,
                "max_keys": max_keys,
                "objects": [o.to_dict(with_metadata=False) for o in page.objects],
                "key_count": len(page.objects),
                "is_truncated": page.is_truncated,
                "next_start_after": page.next_start_after,
            }
        )

    async def put_object(self, request: Request) -> Response:
        bucket, key = object_path(request)
        store = self.store
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > store.max_object_bytes:
            raise EntityTooLarge(
                f"the object is {declared} bytes; the limit is {store.max_object_bytes} (max_object_bytes)"
            )
        metadata = {
            name[len(META_PREFIX) :]: value
            for name, value in request.headers.items()
            if name.startswith(META_PREFIX) and len(name) > len(META_PREFIX)
        }
        await run_in_threadpool(store.head_bucket, bucket)
        request_id = new_request_id()
        upload = await run_in_threadpool(store.upload)
        try:
            pending = bytearray()
            try:
                async for chunk in request.stream():
                    pending += chunk
                    if len(pending) >= WRITE_CHUNK:
                        await run_in_threadpool(upload.write, bytes(pending))
                        pending.clear()
            except ClientDisconnect:
                raise InvalidRequest(
                    "the client went away before the whole body was sent; nothing was written"
                ) from None
            if pending:
                await run_in_threadpool(upload.write, bytes(pending))
            info = await run_in_threadpool(
                lambda: store.commit(
                    upload,
                    bucket,
                    key,
                    content_type=request.headers.get("content-type"),
                    metadata=metadata,
                    source_ip=request.client.host if request.client else "127.0.0.1",
                    request_id=request_id,
                )
            )
        finally:
            await run_in_threadpool(upload.abort)
        headers = {"etag": f'"{info.etag}"', "x-amz-request-id": request_id}
        return json_response({"bucket": bucket, **info.to_dict()}, headers=headers)

    async def head_object(self, request: Request) -> Response:
        bucket, key = object_path(request)
        try:
            info = await run_in_threadpool(self.store.head_object, bucket, key)
        except WasmhostError as error:  # a HEAD answer has no body: the error type goes in a header
            return Response(status_code=error.status, headers={"x-wasmhost-error-type": error.type})
        return Response(status_code=200, headers=object_headers(info))

    async def get_object(self, request: Request) -> Response:
        bucket, key = object_path(request)
        info, handle = await run_in_threadpool(self.store.open_object, bucket, key)
        headers = object_headers(info)
        wanted = request.headers.get("if-none-match")
        if wanted and (wanted.strip() == "*" or f'"{info.etag}"' in wanted or info.etag in wanted.split(",")):
            handle.close()
            return Response(status_code=304, headers={"etag": headers["etag"]})
        return StreamingResponse(_read(handle), headers=headers, media_type=info.content_type)

    async def delete_object(self, request: Request) -> Response:
        bucket, key = object_path(request)
        source_ip = request.client.host if request.client else "127.0.0.1"
        request_id, store = new_request_id(), self.store
        await run_in_threadpool(lambda: store.delete_object(bucket, key, source_ip=source_ip, request_id=request_id))
        return Response(status_code=204, headers={"x-amz-request-id": request_id})


def object_path(request: Request) -> tuple[str, str]:
    """(bucket, key) of ``/buckets/{bucket}/{key}``, the key percent-decoded from the raw path as UTF-8."""
    raw = request.scope.get("raw_path")
    if not raw:
        return request.path_params["bucket"], check_key(request.path_params["key"])
    _, _, rest = raw.partition(PREFIX.encode())
    bucket, _, key_bytes = rest.partition(b"/")
    try:
        key = urllib.parse.unquote_to_bytes(key_bytes).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidObjectKey("the object key is not valid UTF-8 once percent-decoded") from None
    return urllib.parse.unquote(bucket.decode("latin-1")), check_key(key)


def object_headers(info: ObjectInfo) -> dict[str, str]:
    headers = {
        "content-type": info.content_type,
        "content-length": str(info.size),
        "etag": f'"{info.etag}"',
        "last-modified": email.utils.formatdate(info.last_modified, usegmt=True),
    }
    for name, value in info.metadata.items():
        headers[META_PREFIX + name] = value
    return headers


def _read(handle: IO[bytes]) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(READ_CHUNK):
            yield chunk
