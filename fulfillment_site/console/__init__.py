"""The staff console: the admin site's dashboard of problems, the order page, alerts and metrics."""
