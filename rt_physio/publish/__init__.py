"""Publishing predictions: the versioned message schema and the ZeroMQ publisher."""
