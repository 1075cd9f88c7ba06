"""Access to the Kubernetes API: EKS tokens, kubeconfig secrets, typed errors."""
