"""standins package."""
