"""Tickets: signed QR codes, the keys that sign and verify them, and their images."""
