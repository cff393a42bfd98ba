"""Scoring of answers and retrieval: lexical metrics, span-based retrieval metrics, LLM judges."""
