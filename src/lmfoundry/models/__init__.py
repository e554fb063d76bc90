"""Models: the store (catalog, pull/list/show/rm), loading, profiles, quantization, memory planning."""
