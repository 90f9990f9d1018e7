"""The members' web console: a server-rendered adapter over the node's operator API."""
