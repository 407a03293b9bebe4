"""Pure domain: key format, hashing, permissions, models and errors (standard library only)."""
