"""Fulfillment: provider contract and registry, Mock and Digiflazz providers, delivery services,
Celery tasks, admin actions and management commands."""
