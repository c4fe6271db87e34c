"""Reusable test harness for task streaming: services, clients, pytest plugin."""
