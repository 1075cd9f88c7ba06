"""The notify job: rollout state changes become GitHub statuses and deployments, CodeCommit
comments, SNS and Slack messages."""
