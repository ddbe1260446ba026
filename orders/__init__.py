"""Orders: products, orders and their items, the order status machine and the T-Bank webhook."""
