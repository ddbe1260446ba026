"""Benchmarks of the webhook and the delivery workers (`make bench`, `make bench-quick`); see docs/benchmarks.md."""
