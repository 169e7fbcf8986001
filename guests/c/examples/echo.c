/* echo: returns the event unchanged (its msgpack bytes copied verbatim). */
#include "wasmhost.h"

static int handle(wh_reader event, const wh_context *ctx, wh_writer *out) {
    (void)ctx;
    const uint8_t *start = event.p;
    if (!wh_skip(&event)) return wh_fail(out, "InvalidEvent", "event is not valid msgpack");
    wh_write_raw(out, start, (size_t)(event.p - start));
    return 0;
}

WASMHOST_HANDLER(handle);
