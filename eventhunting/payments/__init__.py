"""Payment gateway adapters (VNPAY): signing, pay URLs, callbacks, querydr and refund."""
