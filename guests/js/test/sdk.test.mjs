// Unit tests of sdk/wasmhost.js under Node (no WebAssembly): node --test guests/js/test/
import assert from "node:assert/strict";
import { test } from "node:test";

import { createHandle, decode, encode, makeContext } from "../sdk/wasmhost.js";

const hex = (s) => Uint8Array.from(s.replace(/\s+/g, "").match(/../g).map((b) => parseInt(b, 16)));
const CONTEXT = { request_id: "r1", function_name: "f", function_version: "$LATEST", memory_limit_mb: 128, deadline_ms: Date.now() + 3000 };
const request = (event) => encode({ event, context: CONTEXT });

test("decodes the ABI's example request (guests/ABI.md §4)", () => {
  const req = decode(hex(`82 a5 6576656e74 81 a1 6e 05 a7 636f6e74657874 85
    aa 726571756573745f6964 a2 7231 ad 66756e6374696f6e5f6e616d65 a1 66
    b0 66756e6374696f6e5f76657273696f6e a7 244c4154455354
    af 6d656d6f72795f6c696d69745f6d62 cc 80 ab 646561646c696e655f6d73 cf 0000018bcfe573b8`));
  assert.deepEqual(req, {
    event: { n: 5 },
    context: { request_id: "r1", function_name: "f", function_version: "$LATEST", memory_limit_mb: 128, deadline_ms: 1700000003000 },
  });
});

test("encodes the ABI's example responses (guests/ABI.md §5)", () => {
  assert.deepEqual(encode({ ok: "hi" }), hex("81 a2 6f6b a2 6869"));
  assert.deepEqual(encode({ error: { type: "ValidationError", message: "name is required" } }), hex(
    "81 a5 6572726f72 82 a4 74797065 af 56616c69646174696f6e4572726f72 a7 6d657373616765 b0 6e616d65206973207265717569726564"));
});

test("round-trips every msgpack family", () => {
  const values = [null, true, false, 0, 127, 128, 255, 256, 65535, 65536, 2 ** 32, 2 ** 53 - 1, -1, -32, -33, -128, -129,
    -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53) + 1, 2n ** 64n - 1n, -(2n ** 63n), 1.5, -0.25, NaN, Infinity,
    "", "a".repeat(31), "a".repeat(32), "é".repeat(200), "x".repeat(70000), "日本".repeat(3000),
    new Uint8Array(0), new Uint8Array(300).fill(7), new Uint8Array(70000), [], Array.from({ length: 20 }, (_, i) => i),
    {}, Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i])), { a: [1, { b: null }] }];
  for (const v of values) assert.deepEqual(decode(encode(v)), v);
});

test("JSON-like encoding rules", () => {
  assert.deepEqual(decode(encode({ a: undefined, f() {}, d: new Date(0), b: 1 })), { d: "1970-01-01T00:00:00.000Z", b: 1 });
  assert.deepEqual(decode(encode([undefined])), [null]);
  assert.deepEqual(decode(encode(new Map([["k", 1]]))), { k: 1 });
  assert.deepEqual(decode(encode(new Set([1, 2]))), [1, 2]);
  const cyclic = {};
  cyclic.self = cyclic;
  assert.throws(() => encode(cyclic), TypeError);
  const proto = decode(encode({ ["__proto__"]: { polluted: true } }));
  assert.equal({}.polluted, undefined);
  assert.deepEqual(Object.keys(proto), ["__proto__"]);
});

test("rejects malformed msgpack", () => {
  for (const bad of [hex("c1"), hex("92 01"), hex("01 02"), hex("a3 6162")]) assert.throws(() => decode(bad));
});

test("Lambda context", () => {
  const ctx = makeContext(CONTEXT);
  assert.equal(ctx.functionName, "f");
  assert.equal(ctx.functionVersion, "$LATEST");
  assert.equal(ctx.awsRequestId, "r1");
  assert.equal(ctx.memoryLimitInMB, "128");
  assert.equal(ctx.logGroupName, "/aws/lambda/f");
  assert.match(ctx.logStreamName, /^\d{4}\/\d{2}\/\d{2}\/\[\$LATEST\]r1$/);
  assert.match(ctx.invokedFunctionArn, /:function:f$/);
  const left = ctx.getRemainingTimeInMillis();
  assert.ok(left > 2000 && left <= 3000, String(left));
});

test("handle: async, sync, callback, errors", async () => {
  const call = async (mod, event = { a: 1 }) => decode(await createHandle(mod, "handler", "index.js")(request(event)));
  assert.deepEqual(await call({ handler: async (event) => ({ statusCode: 200, body: JSON.stringify(event) }) }),
    { ok: { statusCode: 200, body: '{"a":1}' } });
  assert.deepEqual(await call({ handler: (event) => event }), { ok: { a: 1 } });
  // A two-parameter handler still receives a callback (ignored: its return value answers).
  assert.deepEqual(await call({ handler: function () { return typeof arguments[2]; } }), { ok: "function" });
  assert.deepEqual(await call({ handler: (event, context, cb) => { setTimeout(() => cb(null, 7), 1); } }), { ok: 7 });
  assert.deepEqual(await call({ default: { handler: () => "cjs" } }), { ok: "cjs" });
  const { error } = await call({ handler: () => { throw new TypeError("bad"); } });
  assert.equal(error.type, "TypeError");
  assert.equal(error.message, "bad");
  assert.equal(error.errorType, "TypeError");
  assert.equal(error.errorMessage, "bad");
  assert.equal(error.stackTrace[0], "TypeError: bad");
  assert.deepEqual((await call({ handler: async () => { throw "str"; } })).error,
    { type: "string", message: "str", errorType: "string", errorMessage: "str", stackTrace: [] });
  assert.equal((await call({ handler: (e, c, cb) => cb(new RangeError("r")) })).error.type, "RangeError");
  assert.equal((await call({ handler: () => 1n << 70n })).error.type, "InvalidResult");
  const garbage = decode(createHandle({ handler: () => 1 }, "handler", "x")(hex("c1")));
  assert.equal(garbage.error.type, "InvalidRequest");
});

test("a missing or non-function export throws (and so fails the build)", () => {
  assert.throws(() => createHandle({ other: () => 1 }, "handler", "index.js"), /index\.js has no export named "handler" \(its exports: other\)/);
  assert.throws(() => createHandle({ handler: 42 }, "handler", "index.js"), /is a number, not a function/);
});

test("a JSON request is answered in JSON when JSON carries the answer exactly, else in msgpack", async () => {
  const jsonRequest = (event) => new TextEncoder().encode(JSON.stringify({ event, context: CONTEXT }));
  const answer = async (handler, event = { a: 1 }) => {
    const bytes = await createHandle({ handler }, "handler", "index.js")(jsonRequest(event));
    return bytes[0] === 0x7b ? ["json", JSON.parse(new TextDecoder().decode(bytes))] : ["msgpack", decode(bytes)];
  };
  assert.deepEqual(await answer((event) => event, { a: [1, "é", null, { b: true }] }), ["json", { ok: { a: [1, "é", null, { b: true }] } }]);
  assert.deepEqual(await answer((event, context) => context.awsRequestId), ["json", { ok: "r1" }]);
  assert.deepEqual(await answer(() => ({ d: new Date(0), u: undefined })), ["json", { ok: { d: "1970-01-01T00:00:00.000Z" } }]);
  // What JSON would change goes as msgpack, exactly as before.
  assert.deepEqual(await answer(() => new Uint8Array([1, 2])), ["msgpack", { ok: new Uint8Array([1, 2]) }]);
  assert.deepEqual(await answer(() => ({ m: new Map([["k", 1]]) })), ["msgpack", { ok: { m: { k: 1 } } }]);
  assert.deepEqual(await answer(() => [new Set([1])]), ["msgpack", { ok: [[1]] }]);
  assert.deepEqual(await answer(() => ({ x: NaN })), ["msgpack", { ok: { x: NaN } }]);
  assert.deepEqual(await answer(() => 2n ** 60n), ["msgpack", { ok: 2n ** 60n }]);
  // Errors too.
  const [format, thrown] = await answer(() => { throw new RangeError("no"); });
  assert.equal(format, "json");
  assert.equal(thrown.error.type, "RangeError");
  const cyclic = {};
  cyclic.self = cyclic;
  const [, bad] = await answer(() => cyclic);
  assert.equal(bad.error.type, "InvalidResult");
});

test("a malformed JSON request is an InvalidRequest", async () => {
  const bytes = await createHandle({ handler: (e) => e }, "handler", "index.js")(new TextEncoder().encode("{nope"));
  const answer = JSON.parse(new TextDecoder().decode(bytes));
  assert.equal(answer.error.type, "InvalidRequest");
});
