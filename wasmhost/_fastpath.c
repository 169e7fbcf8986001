/*
 * wasmhost._fastpath: one invocation of a core-module guest in one C call.
 *
 * The Python invoke path (wasmhost/sandbox.py) makes about twenty ctypes calls
 * per invocation; each costs more than the wasmtime work behind it. This module
 * makes the same wasmtime C-API calls, in the same order, from C: a fresh Store
 * with its limits, WASI if the guest imports it, instantiation from an
 * InstancePre, the ABI calls (_initialize, wasmhost_alloc, wasmhost_handle),
 * the response copied out, the Store deleted. The GIL is released while guest
 * code runs. Errors are not interpreted here: the raw wasmtime error or trap
 * pointer goes back to Python, which translates it (sandbox.Sandbox._failure).
 *
 * wasmtime's functions are found with dlsym in the library wasmtime-py already
 * loaded (pinned to 50.0.x in pyproject.toml); the struct layouts below are
 * those of its C API, checked against wasmtime-py's ctypes declarations by
 * tests/test_fastpath.py.
 *
 * If this extension cannot be built, wasmhost falls back to the ctypes path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { uint64_t store_id; void *private_; } wt_func;
typedef struct { struct { uint64_t store_id; uint32_t private1; } a; uint32_t private2; } wt_memory;
typedef struct { uint8_t kind; union { wt_func func; wt_memory memory; uint8_t pad[24]; } of; } wt_extern;
typedef struct { uint64_t store_id; size_t private_; } wt_instance;
typedef union { int32_t i32; int64_t i64; uint8_t v128[16]; } wt_val_raw;
typedef intptr_t (*output_fn)(void *, const unsigned char *, size_t);

static void *(*store_new)(void *engine, void *data, void (*finalizer)(void *));
static void *(*store_context)(void *store);
static void (*store_limiter)(void *store, int64_t, int64_t, int64_t, int64_t, int64_t);
static void (*store_delete)(void *store);
static void (*set_epoch_deadline)(void *ctx, uint64_t);
static void *(*set_fuel)(void *ctx, uint64_t);
static void *(*get_fuel)(void *ctx, uint64_t *);
static void *(*wasi_config_new)(void);
static int (*wasi_config_set_env)(void *, size_t, const char *const *, const char *const *);
static void (*wasi_config_set_stdout_custom)(void *, output_fn, void *, void (*)(void *));
static void (*wasi_config_set_stderr_custom)(void *, output_fn, void *, void (*)(void *));
static void *(*set_wasi)(void *ctx, void *wasi);
static void *(*instance_pre_instantiate)(void *pre, void *ctx, wt_instance *, void **trap);
static int (*instance_export_nth)(void *ctx, const wt_instance *, size_t, char **, size_t *, wt_extern *);
static void *(*func_call_unchecked)(void *ctx, const wt_func *, wt_val_raw *, size_t, void **trap);
static uint8_t *(*memory_data)(void *ctx, const wt_memory *);
static size_t (*memory_data_size)(void *ctx, const wt_memory *);
static void (*engine_increment_epoch)(void *engine);

static int bound = 0;

#define BIND(name, symbol)                                                     \
    do {                                                                       \
        *(void **)(&name) = dlsym(lib, symbol);                                \
        if (!name) {                                                           \
            PyErr_Format(PyExc_RuntimeError, "wasmtime has no %s", symbol);    \
            return NULL;                                                       \
        }                                                                      \
    } while (0)

/* bind(path): find the wasmtime C API in the library at `path`. */
static PyObject *fp_bind(PyObject *self, PyObject *args) {
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path)) return NULL;
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (!lib) lib = dlopen(path, RTLD_NOW);
    if (!lib) {
        PyErr_Format(PyExc_RuntimeError, "cannot open %s: %s", path, dlerror());
        return NULL;
    }
    BIND(store_new, "wasmtime_store_new");
    BIND(store_context, "wasmtime_store_context");
    BIND(store_limiter, "wasmtime_store_limiter");
    BIND(store_delete, "wasmtime_store_delete");
    BIND(set_epoch_deadline, "wasmtime_context_set_epoch_deadline");
    BIND(set_fuel, "wasmtime_context_set_fuel");
    BIND(get_fuel, "wasmtime_context_get_fuel");
    BIND(wasi_config_new, "wasi_config_new");
    BIND(wasi_config_set_env, "wasi_config_set_env");
    BIND(wasi_config_set_stdout_custom, "wasi_config_set_stdout_custom");
    BIND(wasi_config_set_stderr_custom, "wasi_config_set_stderr_custom");
    BIND(set_wasi, "wasmtime_context_set_wasi");
    BIND(instance_pre_instantiate, "wasmtime_instance_pre_instantiate");
    BIND(instance_export_nth, "wasmtime_instance_export_nth");
    BIND(func_call_unchecked, "wasmtime_func_call_unchecked");
    BIND(memory_data, "wasmtime_memory_data");
    BIND(memory_data_size, "wasmtime_memory_data_size");
    BIND(engine_increment_epoch, "wasmtime_engine_increment_epoch");
    bound = 1;
    Py_RETURN_NONE;
}

static void no_finalizer(void *data) { (void)data; }

/* Outcome codes (the first element of run()'s result tuple). */
enum {
    FP_OK = 0,          /* response bytes returned */
    FP_FAILED = 1,      /* a wasmtime error or trap: (error_ptr, trap_ptr, phase) */
    FP_ALLOC_NULL = 2,  /* wasmhost_alloc returned 0 */
    FP_ALLOC_OOB = 3,   /* wasmhost_alloc returned a pointer outside memory */
    FP_RESPONSE_OOB = 4 /* wasmhost_handle pointed outside memory */
};

/* Phases for FP_FAILED. */
enum { PHASE_SETUP = 0, PHASE_INSTANTIATE = 1, PHASE_CALL = 2 };

/*
 * run(engine, pre, memory_index, alloc_index, handle_index, initialize_index,
 *     memory_bytes, table_elements, deadline_ticks, fuel (0: the engine has no fuel),
 *     output_callback, log_key, env_count, env_keys, env_values, request)
 *
 * Pointers are passed as ints. initialize_index < 0 means none; output_callback
 * == 0 means the guest does not import WASI. Returns
 *     (code, response | None, fuel_used, memory_bytes, error_ptr, trap_ptr, phase, detail)
 * where detail is the offending pointer for FP_ALLOC_OOB / FP_RESPONSE_OOB.
 */
static PyObject *fp_run(PyObject *self, PyObject *args) {
    unsigned long long engine, pre, callback, env_keys, env_values;
    long long memory_index, alloc_index, handle_index, init_index, memory_bytes, table_elements;
    unsigned long long ticks, fuel, log_key, env_count;
    Py_buffer request;
    if (!PyArg_ParseTuple(args, "KKLLLLLLKKKKKKKy*", &engine, &pre, &memory_index, &alloc_index,
                          &handle_index, &init_index, &memory_bytes, &table_elements, &ticks, &fuel,
                          &callback, &log_key, &env_count, &env_keys, &env_values, &request))
        return NULL;
    if (!bound) {
        PyBuffer_Release(&request);
        PyErr_SetString(PyExc_RuntimeError, "wasmhost._fastpath.bind() was not called");
        return NULL;
    }

    int code = FP_OK, phase = PHASE_SETUP;
    void *error = NULL, *trap = NULL;
    uint64_t detail = 0, remaining = 0, fuel_used = 0;
    size_t memory_size = 0;
    int have_memory = 0;
    PyObject *response = NULL;
    uint8_t *out = NULL;
    uint32_t out_len = 0;
    wt_instance instance;
    wt_extern memory_ext, alloc_ext, handle_ext, init_ext;
    char *name;
    size_t name_len;
    wt_val_raw vals[2];

    void *store = store_new((void *)(uintptr_t)engine, NULL, no_finalizer);
    void *ctx = store_context(store);
    store_limiter(store, memory_bytes, table_elements, -1, -1, -1);
    set_epoch_deadline(ctx, ticks);
    error = fuel ? set_fuel(ctx, fuel) : NULL; /* 0: an engine without fuel */
    if (!error && callback) {
        void *wasi = wasi_config_new();
        if (env_count)
            wasi_config_set_env(wasi, (size_t)env_count, (const char *const *)(uintptr_t)env_keys,
                                (const char *const *)(uintptr_t)env_values);
        wasi_config_set_stdout_custom(wasi, (output_fn)(uintptr_t)callback, (void *)(uintptr_t)log_key,
                                      no_finalizer);
        wasi_config_set_stderr_custom(wasi, (output_fn)(uintptr_t)callback, (void *)(uintptr_t)log_key,
                                      no_finalizer);
        error = set_wasi(ctx, wasi);
    }
    if (error) {
        code = FP_FAILED;
        goto done;
    }

    Py_BEGIN_ALLOW_THREADS
    phase = PHASE_INSTANTIATE;
    error = instance_pre_instantiate((void *)(uintptr_t)pre, ctx, &instance, &trap);
    if (!error && !trap) {
        phase = PHASE_CALL;
        instance_export_nth(ctx, &instance, (size_t)memory_index, &name, &name_len, &memory_ext);
        have_memory = 1;
        instance_export_nth(ctx, &instance, (size_t)alloc_index, &name, &name_len, &alloc_ext);
        instance_export_nth(ctx, &instance, (size_t)handle_index, &name, &name_len, &handle_ext);
        if (init_index >= 0) {
            instance_export_nth(ctx, &instance, (size_t)init_index, &name, &name_len, &init_ext);
            error = func_call_unchecked(ctx, &init_ext.of.func, vals, 2, &trap);
        }
        if (!error && !trap) {
            vals[0].i32 = (int32_t)request.len;
            error = func_call_unchecked(ctx, &alloc_ext.of.func, vals, 2, &trap);
        }
        if (!error && !trap) {
            uint32_t pointer = (uint32_t)vals[0].i32;
            memory_size = memory_data_size(ctx, &memory_ext.of.memory);
            if (pointer == 0 && request.len) {
                code = FP_ALLOC_NULL;
            } else if ((uint64_t)pointer + (uint64_t)request.len > memory_size) {
                code = FP_ALLOC_OOB;
                detail = pointer;
            } else {
                memcpy(memory_data(ctx, &memory_ext.of.memory) + pointer, request.buf, (size_t)request.len);
                vals[0].i32 = (int32_t)pointer;
                vals[1].i32 = (int32_t)request.len;
                error = func_call_unchecked(ctx, &handle_ext.of.func, vals, 2, &trap);
                if (!error && !trap) {
                    uint64_t packed = (uint64_t)vals[0].i64;
                    uint64_t out_ptr = packed >> 32;
                    out_len = (uint32_t)packed;
                    memory_size = memory_data_size(ctx, &memory_ext.of.memory);
                    if (out_ptr + out_len > memory_size) {
                        code = FP_RESPONSE_OOB;
                        detail = packed;
                    } else {
                        out = memory_data(ctx, &memory_ext.of.memory) + out_ptr;
                    }
                }
            }
        }
    }
    Py_END_ALLOW_THREADS

    if (error || trap) code = FP_FAILED;
    if (code == FP_OK) {
        response = PyBytes_FromStringAndSize((const char *)out, out_len);
        if (!response) {
            Py_BEGIN_ALLOW_THREADS
            store_delete(store);
            Py_END_ALLOW_THREADS
            PyBuffer_Release(&request);
            return NULL;
        }
    }

done:
    if (fuel && !get_fuel(ctx, &remaining)) fuel_used = fuel - remaining;
    if (have_memory && code != FP_OK) memory_size = memory_data_size(ctx, &memory_ext.of.memory);
    Py_BEGIN_ALLOW_THREADS
    store_delete(store);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&request);
    if (!response) {
        response = Py_None;
        Py_INCREF(response);
    }
    return Py_BuildValue("(iNKnKKiK)", code, response, (unsigned long long)fuel_used,
                         (Py_ssize_t)(have_memory ? memory_size : 0), (unsigned long long)(uintptr_t)error,
                         (unsigned long long)(uintptr_t)trap, phase, (unsigned long long)detail);
}

/*
 * The epoch ticker: one native thread that sleeps to the next multiple of the
 * period (absolute CLOCK_MONOTONIC deadlines, so ticks do not drift) and
 * advances the engine's epoch. No GIL, no thread per tick (glibc's SIGEV_THREAD
 * timers start a new thread for every expiry, which cost ~6% of HTTP
 * throughput at a 2 ms period).
 */
typedef struct {
    void *engine;
    long period_ns;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop;
    pthread_t thread;
    long long next_ns; /* when the next tick is due (CLOCK_MONOTONIC ns); read by ticker_overdue */
} ticker_t;

static long long ts_ns(const struct timespec *t) { return (long long)t->tv_sec * 1000000000LL + t->tv_nsec; }

static void add_ns(struct timespec *t, long ns) {
    t->tv_nsec += ns;
    while (t->tv_nsec >= 1000000000L) {
        t->tv_nsec -= 1000000000L;
        t->tv_sec += 1;
    }
}

static void *ticker_main(void *arg) {
    ticker_t *t = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    __atomic_store_n(&t->next_ns, ts_ns(&next) + t->period_ns, __ATOMIC_RELAXED);
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        add_ns(&next, t->period_ns);
        int rc = 0;
        while (!t->stop && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&t->wake, &t->lock, &next);
        if (t->stop) break;
        engine_increment_epoch(t->engine);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec + 1) next = now; /* after a suspend: no burst of catch-up ticks */
        __atomic_store_n(&t->next_ns, ts_ns(&next) + t->period_ns, __ATOMIC_RELAXED); /* the next tick's due time */
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* ticker_start(engine, period_ns) -> handle: start ticking `engine`. */
static PyObject *fp_ticker_start(PyObject *self, PyObject *args) {
    unsigned long long engine;
    long period_ns;
    if (!PyArg_ParseTuple(args, "Kl", &engine, &period_ns)) return NULL;
    if (!bound) return PyErr_Format(PyExc_RuntimeError, "bind() first");
    if (period_ns <= 0) return PyErr_Format(PyExc_ValueError, "period must be positive");
    ticker_t *t = calloc(1, sizeof *t);
    if (!t) return PyErr_NoMemory();
    t->engine = (void *)(uintptr_t)engine;
    t->period_ns = period_ns;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&t->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&t->lock, NULL);
    int rc = pthread_create(&t->thread, NULL, ticker_main, t);
    if (rc != 0) {
        free(t);
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)t);
}

/* ticker_overdue(handle) -> int: ticks due by now that the (stalled) thread has not made
 * yet. It makes them in a burst when it runs again, so a deadline set now must add them,
 * or a guest that starts during a stall would be stopped early. */
static PyObject *fp_ticker_overdue(PyObject *self, PyObject *args) {
    unsigned long long handle;
    if (!PyArg_ParseTuple(args, "K", &handle)) return NULL;
    ticker_t *t = (ticker_t *)(uintptr_t)handle;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long late = ts_ns(&now) - __atomic_load_n(&t->next_ns, __ATOMIC_RELAXED);
    return PyLong_FromLongLong(late < 0 ? 0 : late / t->period_ns + 1);
}

/* ticker_stop(handle): stop and join the thread; no tick happens after it returns. */
static PyObject *fp_ticker_stop(PyObject *self, PyObject *args) {
    unsigned long long handle;
    if (!PyArg_ParseTuple(args, "K", &handle)) return NULL;
    ticker_t *t = (ticker_t *)(uintptr_t)handle;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&t->lock);
    t->stop = 1;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    Py_END_ALLOW_THREADS
    pthread_cond_destroy(&t->wake);
    pthread_mutex_destroy(&t->lock);
    free(t);
    Py_RETURN_NONE;
}

/* --- concurrency counters (wasmhost/concurrency.py) ---------------------------- */

/* Header fields of concurrency.shm (int32 indexes; see concurrency.py). */
#define CONC_HIGH_WATER 5
#define CONC_GENERATION 7
#define CONC_ROWS 64

static int conc_view(PyObject *map, Py_buffer *view, long totals_at, long counts_at, long first, long row) {
    if (PyObject_GetBuffer(map, view, PyBUF_WRITABLE) < 0) return -1;
    if (first < 0 || row < 0 || row >= CONC_ROWS || totals_at < 64 ||
        totals_at + 4 * CONC_ROWS > view->len || counts_at + 4 * (first + CONC_ROWS) > view->len) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "counter offsets outside the mapped file");
        return -1;
    }
    return 0;
}

/* conc_acquire(map, totals_at, counts_at, first, row, host_limit, reserved, generation) -> bool
 * The lock-free path of SharedConcurrency.acquire: when the slot table has not
 * changed (generation) and both limits leave room for every live process to
 * add one (`rows`), take the slot (own row's counters) and answer True; else
 * False, and the caller takes the exact path under flock. reserved < 0: none.
 * The caller holds its thread lock; the GIL is held throughout. */
static PyObject *fp_conc_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) return PyErr_Format(PyExc_TypeError, "conc_acquire takes 8 arguments");
    long v[7];
    for (int i = 0; i < 7; i++) {
        v[i] = PyLong_AsLong(args[i + 1]);
        if (v[i] == -1 && PyErr_Occurred()) return NULL;
    }
    long totals_at = v[0], counts_at = v[1], first = v[2], row = v[3], host_limit = v[4], reserved = v[5];
    Py_buffer view;
    if (conc_view(args[0], &view, totals_at, counts_at, first, row) < 0) return NULL;
    int32_t *header = (int32_t *)view.buf;
    int32_t *totals = (int32_t *)((char *)view.buf + totals_at);
    int32_t *counts = (int32_t *)((char *)view.buf + counts_at) + first;
    int taken = 0;
    if (header[CONC_GENERATION] == v[6]) {
        long rows = header[CONC_HIGH_WATER], host = 0, function = 0;
        if (rows > CONC_ROWS) rows = CONC_ROWS;
        for (long i = 0; i < rows; i++) host += totals[i];
        if (host + rows <= host_limit) {
            if (reserved >= 0)
                for (long i = 0; i < rows; i++) function += counts[i];
            if (reserved < 0 || function + rows <= reserved) {
                counts[row] += 1;
                totals[row] += 1;
                taken = 1;
            }
        }
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(taken);
}

/* conc_release(map, totals_at, counts_at, first, row) -> bool: give back one slot
 * of this row; False (nothing changed) when the row holds none. */
static PyObject *fp_conc_release(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) return PyErr_Format(PyExc_TypeError, "conc_release takes 5 arguments");
    long v[4];
    for (int i = 0; i < 4; i++) {
        v[i] = PyLong_AsLong(args[i + 1]);
        if (v[i] == -1 && PyErr_Occurred()) return NULL;
    }
    Py_buffer view;
    if (conc_view(args[0], &view, v[0], v[1], v[2], v[3]) < 0) return NULL;
    int32_t *totals = (int32_t *)((char *)view.buf + v[0]);
    int32_t *counts = (int32_t *)((char *)view.buf + v[1]) + v[2];
    int released = 0;
    if (counts[v[3]] > 0) {
        counts[v[3]] -= 1;
        totals[v[3]] -= 1;
        released = 1;
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(released);
}

/* --- telemetry (wasmhost/telemetry/batches.py) ------------------------------------ */

/* tsum(rows, bounds_ms) -> (n, failed, cold, duration_ms, billed_ms, mb_ms, fuel, max_memory,
 *                           min_started, max_started, max_duration_ms, uniform, buckets)
 * One pass over a list of telemetry rows (12-tuples, see batches.PendingRow) for a batch's
 * sums and its duration histogram (buckets[i] = rows with duration <= bounds_ms[i] and
 * above the bound before). `uniform`: every row has row 0's function and version and
 * starts in the same minute. Raises TypeError on a malformed row (the caller then uses
 * the Python path). */
static PyObject *fp_tsum(PyObject *self, PyObject *args) {
    PyObject *rows, *bounds;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &rows, &PyTuple_Type, &bounds)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows), nb = PyTuple_GET_SIZE(bounds);
    if (n == 0 || nb == 0 || nb > 64) return PyErr_Format(PyExc_ValueError, "tsum needs rows and 1-64 bounds");
    double bound[64];
    long long bucket[64] = {0};
    for (Py_ssize_t i = 0; i < nb; i++) {
        bound[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds, i));
        if (bound[i] == -1.0 && PyErr_Occurred()) return NULL;
    }
    long long failed = 0, cold = 0, billed = 0, mb_ms = 0, fuel = 0, max_memory = 0;
    double duration = 0, min_started = 0, max_started = 0, max_duration = 0;
    int uniform = 1;
    PyObject *function = NULL, *version = NULL;
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != 12) return PyErr_Format(PyExc_TypeError, "not a telemetry row");
        PyObject *f = PyTuple_GET_ITEM(row, 2), *v = PyTuple_GET_ITEM(row, 10);
        double d = PyFloat_AsDouble(PyTuple_GET_ITEM(row, 3));
        long long b = PyLong_AsLongLong(PyTuple_GET_ITEM(row, 4));
        long long m = PyLong_AsLongLong(PyTuple_GET_ITEM(row, 5));
        long long fu = PyLong_AsLongLong(PyTuple_GET_ITEM(row, 6));
        long long mm = PyLong_AsLongLong(PyTuple_GET_ITEM(row, 7));
        int c = PyObject_IsTrue(PyTuple_GET_ITEM(row, 8));
        double st = PyFloat_AsDouble(PyTuple_GET_ITEM(row, 11));
        if (PyErr_Occurred() || c < 0) return NULL;
        if (r == 0) {
            function = f;
            version = v;
            min_started = max_started = st;
        } else {
            if (uniform && ((f != function && PyUnicode_Compare(f, function) != 0) ||
                            (v != version && PyUnicode_Compare(v, version) != 0))) {
                if (PyErr_Occurred()) return NULL;
                uniform = 0;
            }
            if (st < min_started) min_started = st;
            if (st > max_started) max_started = st;
        }
        if (PyTuple_GET_ITEM(row, 0) != Py_None) failed++;
        cold += c;
        duration += d;
        billed += b;
        mb_ms += b * m;
        fuel += fu;
        if (mm > max_memory) max_memory = mm;
        if (d > max_duration) max_duration = d;
        Py_ssize_t k = 0;
        while (k < nb - 1 && d > bound[k]) k++;
        bucket[k]++;
    }
    if (uniform && (long long)(min_started / 60.0) != (long long)(max_started / 60.0)) uniform = 0;
    PyObject *counts = PyTuple_New(nb);
    if (!counts) return NULL;
    for (Py_ssize_t i = 0; i < nb; i++) PyTuple_SET_ITEM(counts, i, PyLong_FromLongLong(bucket[i]));
    return Py_BuildValue("(nLLdLLLLdddNN)", n, failed, cold, duration, billed, mb_ms, fuel, max_memory, min_started,
                         max_started, max_duration, PyBool_FromLong(uniform), counts);
}

static PyMethodDef methods[] = {
    {"tsum", fp_tsum, METH_VARARGS, "tsum(rows, bounds_ms) -> the sums of a telemetry batch (see the C source)."},
    {"conc_acquire", (PyCFunction)(void (*)(void))fp_conc_acquire, METH_FASTCALL,
     "conc_acquire(map, totals_at, counts_at, first, row, host_limit, reserved, generation) -> bool."},
    {"conc_release", (PyCFunction)(void (*)(void))fp_conc_release, METH_FASTCALL,
     "conc_release(map, totals_at, counts_at, first, row) -> bool."},
    {"bind", fp_bind, METH_VARARGS, "bind(path): find wasmtime's C API in the library at path."},
    {"run", fp_run, METH_VARARGS, "Run one invocation of a core-module guest (see the C source)."},
    {"ticker_start", fp_ticker_start, METH_VARARGS, "ticker_start(engine, period_ns) -> handle."},
    {"ticker_stop", fp_ticker_stop, METH_VARARGS, "ticker_stop(handle): stop and join the ticker thread."},
    {"ticker_overdue", fp_ticker_overdue, METH_VARARGS, "ticker_overdue(handle) -> ticks due but not made yet."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "wasmhost._fastpath",
                                    "One guest invocation in one C call.", -1, methods};

PyMODINIT_FUNC PyInit__fastpath(void) { return PyModule_Create(&module); }
