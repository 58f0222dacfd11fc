"""Test support: real servers started per test session."""
