"""Night shrink and morning restore of the worker Auto Scaling Group (issue 5)."""
