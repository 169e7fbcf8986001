"""Thumbnails: an image uploaded to a bucket becomes a smaller copy in another bucket.

Attach it to a bucket with ``include_body = true`` (see wasmhost.toml): each
``ObjectCreated`` record then carries the object's bytes, base64-encoded, in
``s3.object.body``. The image is a binary PGM (``P5``, 8 or 16 bits per pixel).
The function returns ``{"putObjects": [...]}`` and the host writes the derived
images into ``THUMBNAIL_BUCKET`` (default ``thumbnails``) under the same key.

``TRANSFORM`` (environment) chooses what is done:

- ``halve`` (default): half the width and height; each pixel is the mean of a
  2x2 block, rounded half up: ``(a + b + c + d + 2) // 4``. An odd last row or
  column is dropped.
- ``mirror``: the same size, each row reversed (left-right mirror).
"""

import base64
import os
import urllib.parse


def handler(event, context):
    target = os.environ.get("THUMBNAIL_BUCKET", "thumbnails")
    transform = os.environ.get("TRANSFORM", "halve")
    outputs = []
    for record in event.get("Records", []):
        if not record.get("eventName", "").startswith("ObjectCreated:"):
            continue
        obj = record["s3"]["object"]
        key = urllib.parse.unquote_plus(obj["key"])  # S3 URL-encodes keys in events
        if "body" not in obj:
            print(f"skipped {key}: {obj.get('bodyOmitted', 'no body (set include_body on the trigger)')}")
            continue
        width, height, maxval, samples = parse_pgm(base64.b64decode(obj["body"]))
        if transform == "mirror":
            new_width, new_height, result = mirror(width, height, samples)
        elif transform == "halve":
            new_width, new_height, result = halve(width, height, samples)
        else:
            raise ValueError(f"TRANSFORM must be halve or mirror, got {transform!r}")
        image = encode_pgm(new_width, new_height, maxval, result)
        print(
            f"{transform} {record['s3']['bucket']['name']}/{key} {width}x{height} -> {target}/{key} {new_width}x{new_height}"
        )
        outputs.append(
            {
                "bucket": target,
                "key": key,
                "body": base64.b64encode(image).decode(),
                "isBase64Encoded": True,
                "contentType": "image/x-portable-graymap",
                "metadata": {"source": f"{record['s3']['bucket']['name']}/{obj['key']}"},
            }
        )
    return {"putObjects": outputs}


def parse_pgm(data):
    """(width, height, maxval, samples) of a binary PGM; samples row by row, as ints."""
    fields, position = [], 0
    while len(fields) < 4:
        while position < len(data) and data[position : position + 1].isspace():
            position += 1
        if data[position : position + 1] == b"#":  # a comment runs to the end of the line
            while position < len(data) and data[position] not in b"\r\n":
                position += 1
            continue
        start = position
        while position < len(data) and not data[position : position + 1].isspace():
            position += 1
        if start == position:
            raise ValueError("not a PGM image: the header is cut short")
        fields.append(data[start:position])
    if fields[0] != b"P5":
        raise ValueError(f"not a binary PGM image (P5): magic {fields[0][:8]!r}")
    width, height, maxval = (int(field) for field in fields[1:])
    if width < 1 or height < 1 or not 0 < maxval < 65536:
        raise ValueError(f"bad PGM header: {width}x{height}, maxval {maxval}")
    pixels = data[position + 1 :]  # one whitespace byte after maxval
    wide = maxval > 255
    needed = width * height * (2 if wide else 1)
    if len(pixels) < needed:
        raise ValueError(f"PGM pixel data is {len(pixels)} bytes; {width}x{height} needs {needed}")
    if wide:
        samples = [pixels[i] << 8 | pixels[i + 1] for i in range(0, needed, 2)]
    else:
        samples = pixels[:needed]
    return width, height, maxval, samples


def halve(width, height, samples):
    new_width, new_height = width // 2, height // 2
    if new_width == 0 or new_height == 0:
        raise ValueError(f"a {width}x{height} image is too small to halve")
    result = []
    for y in range(new_height):
        top = samples[2 * y * width : 2 * y * width + 2 * new_width]
        bottom = samples[(2 * y + 1) * width : (2 * y + 1) * width + 2 * new_width]
        result.extend(
            (a + b + c + d + 2) // 4
            for a, b, c, d in zip(top[0::2], top[1::2], bottom[0::2], bottom[1::2], strict=True)
        )
    return new_width, new_height, result


def mirror(width, height, samples):
    result = []
    for y in range(height):
        result.extend(reversed(samples[y * width : (y + 1) * width]))
    return width, height, result


def encode_pgm(width, height, maxval, samples):
    header = b"P5\n%d %d\n%d\n" % (width, height, maxval)
    if maxval > 255:
        return header + b"".join(value.to_bytes(2, "big") for value in samples)
    return header + bytes(samples)
