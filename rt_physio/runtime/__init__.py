"""Runtime: sessions (streams → windows), the inference executor, and the engine that ties them together."""
