"""Tracking wing: MLflow runs and the tracker, traces, the prompt registry and redaction of logged text."""
