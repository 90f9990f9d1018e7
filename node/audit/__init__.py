"""The node's audit trail: the local hash chain, anchoring in the hub's log, archive
segments, and the audited operator operations on the store."""
