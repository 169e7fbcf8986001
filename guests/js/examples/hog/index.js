// hog: keeps 1 MiB arrays until the memory limit stops it; SpiderMonkey's
// out-of-memory exception is reported by the host as OutOfMemory.
const kept = [];

export function handler() {
  for (;;) kept.push(new Uint8Array(1 << 20).fill(1));
}
