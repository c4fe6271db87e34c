"""The conformance cases, one module per area; each test names exactly one requirement."""
