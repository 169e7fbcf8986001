/* readfile: tries to read the file at event.path and answers its size.
 * The sandbox preopens no directory, so every path fails with FileError. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "wasmhost.h"

static int handle(wh_reader event, const wh_context *ctx, wh_writer *out) {
    (void)ctx;
    uint32_t len;
    const char *path = wh_get_str(event, "path", &len);
    if (!path) return wh_fail(out, "ValidationError", "path is required");
    char name[512];
    if (len >= sizeof name) return wh_fail(out, "ValidationError", "path is too long");
    memcpy(name, path, len);
    name[len] = 0;
    FILE *f = fopen(name, "rb");
    if (!f) return wh_fail(out, "FileError", strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    wh_write_map(out, 1);
    wh_write_str(out, "size");
    wh_write_int(out, size);
    return 0;
}

WASMHOST_HANDLER(handle);
