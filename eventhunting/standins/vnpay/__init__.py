"""A VNPAY sandbox stand-in: pay pages, return redirects, IPN calls, querydr and refund."""
