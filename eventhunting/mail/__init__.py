"""Outgoing mail: ticket and refund messages, SMTP delivery and the ledger of sent mail."""
