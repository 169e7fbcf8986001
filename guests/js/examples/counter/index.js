// Module-level state: every invocation runs in a fresh instance, so this
// always answers 1.
let invocations = 0;

export function handler(event, context) {
  invocations += 1;
  return invocations;
}
