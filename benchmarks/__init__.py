"""Load and throughput harnesses; not part of the test run (smoke modes are)."""
