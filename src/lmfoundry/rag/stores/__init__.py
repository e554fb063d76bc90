"""Vector store backends (LanceDB default, Qdrant) behind the `VectorStore` protocol."""
