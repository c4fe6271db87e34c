"""Load tests (Locust) and the bench of live task streaming; see README.md here."""
