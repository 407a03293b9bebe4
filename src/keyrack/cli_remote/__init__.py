"""The CLI's remote mode: `--url`/`KEYRACK_URL` commands that talk to a server through the SDK."""
