// Never returns: the host must stop it (epoch interruption -> Timeout).
export function handler(event, context) {
  for (;;) {}
}
