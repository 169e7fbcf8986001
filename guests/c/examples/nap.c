/* nap: sleeps event.ms milliseconds with nanosleep (a blocking WASI
 * poll_oneoff call, unlike sleep_ms which busy-waits). */
#include <time.h>
#include "wasmhost.h"

static int handle(wh_reader event, const wh_context *ctx, wh_writer *out) {
    (void)ctx;
    int64_t ms = wh_get_int(event, "ms", 0);
    int64_t start = wh_now_ms();
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    wh_write_map(out, 1);
    wh_write_str(out, "slept_ms");
    wh_write_int(out, wh_now_ms() - start);
    return 0;
}

WASMHOST_HANDLER(handle);
