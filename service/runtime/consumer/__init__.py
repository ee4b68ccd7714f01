"""The long-lived Kubernetes shard consumer: leases, checkpoints, resharding (issue 5)."""
