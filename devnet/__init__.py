"""Development only: synthetic data, the local network behind ``rcf demo`` and the
benchmarks. Nothing a node runs in a deployment imports this package."""
