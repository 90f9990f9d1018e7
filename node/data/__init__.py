"""The member's own data: the record store, imports validated against the data
dictionary, and the node's copy of that dictionary."""
