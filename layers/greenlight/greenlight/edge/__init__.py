"""The HAProxy edge: the cluster snapshot, the rendered config and its files."""
