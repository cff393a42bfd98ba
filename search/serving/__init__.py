"""Serving wing: the LLM servers a search shares (engines), their Ray actors, and what changes on a cluster."""
