"""Evolution API sandbox: a small HTTP server that speaks the provider's contract (v2, and v1
per instance), records every message and can be told to fail. The embedded default provider
for local runs and the peer of the tests. Runs without Django: see server.py."""
