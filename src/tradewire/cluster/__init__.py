"""Cluster mode on Redis (docs/CLUSTER.md): the node's link, event bus, leader lease, jobs, limits."""
