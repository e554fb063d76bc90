"""Generation: pure sampling functions, the engine (token ids in, tokens out) and its backends."""
