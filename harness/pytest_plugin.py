"""pytest plugin (entry point `taskstream`): options and fixtures for testing a streaming target.

Placeholder replaced below by the full plugin."""
