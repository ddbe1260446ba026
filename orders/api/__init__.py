"""The customer API: catalogue, order creation and order status (DRF, documented by drf-spectacular)."""
