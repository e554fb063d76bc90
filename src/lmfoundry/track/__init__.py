"""Runs and the model registry, on MLflow (sqlite + local artifacts by default).

`runs.log_run(...)` records one finetune / eval / quantize run; `registry` keeps registered models
(versions pointing at a store name and an adapter directory) and their aliases, with `champion`
the model in production and an alias history so a rollback knows where to go back to.
"""
