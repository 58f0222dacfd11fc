"""Application services: load state, call the domain, append the result."""
