/* fib: fib(event.n) by naive recursion, on purpose (a CPU-bound guest). */
#include "wasmhost.h"

__attribute__((noinline)) static int64_t fib(int64_t n) {
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

static int handle(wh_reader event, const wh_context *ctx, wh_writer *out) {
    (void)ctx;
    wh_reader n_val;
    if (!wh_map_find(event, "n", &n_val) || wh_peek(&n_val) != WH_INT)
        return wh_fail(out, "ValidationError", "n (an integer) is required");
    int64_t n = wh_read_int(&n_val);
    if (n_val.err || n < 0 || n > 92)
        return wh_fail(out, "ValidationError", "n must be between 0 and 92");
    wh_write_int(out, fib(n));
    return 0;
}

WASMHOST_HANDLER(handle);
