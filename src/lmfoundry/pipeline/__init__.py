"""YAML pipelines: data -> finetune -> evaluate -> gate -> register -> deploy -> RAG -> smoke test.

`spec.load_pipeline(path)` reads and checks a pipeline file, `runner.run_pipeline(spec)` runs its
stages with caching (`<workdir>/state.json`), `--from` restarts and a progress display; each stage
kind lives in its own module under `stages/`.
"""
