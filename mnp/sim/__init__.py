"""Simulated clusters: the real head driven by virtual nodes on a virtual clock."""
