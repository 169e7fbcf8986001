;; The echo behind the `workerd-wasm` peer, shaped like a wasmhost guest (guests/ABI.md):
;; the worker calls alloc(len), copies the request body to memory[ptr .. ptr+len), calls
;; handle(ptr, len) and reads the answer from memory[r >> 32 .. (r >> 32) + (r & 0xffffffff)).
;; Like wasmhost's C echo (guests/c/examples/echo.c, which copies the event's bytes to its
;; output), handle copies the input into a fresh output buffer; it does not parse JSON.
;; peers.py turns this file into echo.wasm (wasmtime.wat2wasm) before workerd starts.
(module
  (memory (export "memory") 1)

  ;; Bump allocator: first free byte.
  (global $next (mut i32) (i32.const 1024))

  ;; alloc(len) -> ptr, or 0 if memory cannot grow.
  (func $alloc (export "alloc") (param $len i32) (result i32)
    (local $ptr i32)
    (local $end i32)
    (local.set $ptr (global.get $next))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (if (i32.lt_u (local.get $end) (local.get $ptr))
      (then (return (i32.const 0))))
    (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
      (then
        (if (i32.eq
              (memory.grow
                (i32.sub
                  (i32.shr_u (i32.add (local.get $end) (i32.const 0xffff)) (i32.const 16))
                  (memory.size)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $next (i32.and (i32.add (local.get $end) (i32.const 7)) (i32.const -8)))
    (local.get $ptr))

  ;; handle(ptr, len) -> (out_ptr << 32) | out_len; out_len = 0 and out_ptr = 0 if out of memory.
  (func (export "handle") (param $ptr i32) (param $len i32) (result i64)
    (local $out i32)
    (local.set $out (call $alloc (local.get $len)))
    (if (i32.eqz (local.get $out))
      (then (return (i64.const 0))))
    (memory.copy (local.get $out) (local.get $ptr) (local.get $len))
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
      (i64.extend_i32_u (local.get $len))))
)
