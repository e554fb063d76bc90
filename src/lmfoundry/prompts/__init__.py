"""Prompt templates as versioned artifacts: render, choose demonstrations, register versions."""
