"""An SMTP sink stand-in with an inbox page and a JSON API, for development and tests."""
