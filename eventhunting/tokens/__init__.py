"""Access tokens (signed JWTs) and refresh tokens (opaque, rotated, stored hashed in Redis)."""
