"""The OpenAI-compatible server: schemas, scheduler, adapter pool, metrics, protection, capture."""
