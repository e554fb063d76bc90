"""Fine-tuning: data formats, prompt templates, tokenization with label masking, and bundled data."""
