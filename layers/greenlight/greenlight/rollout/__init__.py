"""Image rollout: a commit becomes the candidate ("green") Deployment beside the live one."""
