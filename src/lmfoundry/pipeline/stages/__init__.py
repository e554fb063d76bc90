"""The built-in stage kinds of a pipeline, one module each (`KIND = StageKind(...)`)."""
