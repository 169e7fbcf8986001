/* error: a function error unless the event has a "name" string. */
#include "wasmhost.h"

static int handle(wh_reader event, const wh_context *ctx, wh_writer *out) {
    (void)ctx;
    uint32_t len;
    const char *name = wh_get_str(event, "name", &len);
    if (!name) return wh_fail(out, "ValidationError", "name is required");
    wh_write_map(out, 1);
    wh_write_str(out, "greeting");
    wh_write_str_header(out, 6 + (size_t)len); /* "hello " + name */
    wh_write_raw(out, "hello ", 6);
    wh_write_raw(out, name, len);
    return 0;
}

WASMHOST_HANDLER(handle);
