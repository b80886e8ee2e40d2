"""Persistence: the SQLite store every head-node transition is written through."""
