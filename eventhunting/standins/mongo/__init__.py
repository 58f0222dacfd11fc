"""A MongoDB wire-protocol stand-in server for development and tests (never production)."""
