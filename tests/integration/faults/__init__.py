"""Helpers of the seeded fault harness (tests/integration/test_fault_harness.py)."""
