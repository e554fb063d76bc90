"""Evaluation: metrics, tasks, a runner, champion-vs-challenger statistics, gates, latency and cost."""
