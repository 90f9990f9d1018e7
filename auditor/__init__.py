"""What an auditor runs: verification of node logs, the hub log and proof bundles,
with nothing trusted but public keys. The CLI (`rcf audit …`) only renders it."""
