// Returns the event unchanged.
export function handler(event, context) {
  return event;
}
