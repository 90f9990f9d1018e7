"""The federation core: the server, the one request pipeline, calling peers, replay
protection, the shared protocol rules and the registry of query types."""
