"""What a platform team watches: Prometheus metrics, health and readiness over HTTP."""
