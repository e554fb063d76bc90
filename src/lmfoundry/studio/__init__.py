"""The studio: a web UI (chat, arena, runs, models, server dashboard) served at `/ui` by `lmf serve`
and `lmf studio`. Plain HTML, JavaScript and CSS shipped in `static/` (no build step), over a small
JSON API (`/ui/api/...`) that calls the same library functions as the CLI."""
