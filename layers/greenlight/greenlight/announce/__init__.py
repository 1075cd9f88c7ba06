"""The announce job: every change Greenlight records is published as an EventBridge event."""
