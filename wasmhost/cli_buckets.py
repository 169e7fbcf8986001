"""``wasmhost bucket`` commands (placeholder: filled in by the bucket work)."""
