"""``wasmhost queue`` commands (placeholder: filled in by the queue work)."""
