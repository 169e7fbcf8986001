/* sleep_ms: busy-waits event.ms milliseconds (wall clock) and reports how long
 * it actually waited and how much time the invocation has left. */
#include "wasmhost.h"

static int handle(wh_reader event, const wh_context *ctx, wh_writer *out) {
    int64_t ms = wh_get_int(event, "ms", 0);
    int64_t start = wh_now_ms();
    int64_t now = start;
    while (now - start < ms) now = wh_now_ms();
    wh_write_map(out, 2);
    wh_write_str(out, "slept_ms");
    wh_write_int(out, now - start);
    wh_write_str(out, "remaining_ms");
    wh_write_int(out, wh_remaining_ms(ctx));
    return 0;
}

WASMHOST_HANDLER(handle);
