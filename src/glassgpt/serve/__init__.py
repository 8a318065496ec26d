"""`glassgpt serve`: any glassgpt model behind OpenAI's API, look-inside endpoints and a playground.

* `limits` - what a request may ask for (prompt length, max_tokens, n, queue size), validated;
* `scheduler` - the one worker thread that owns the model: jobs wait in a bounded queue (429 when
  it is full), run one at a time, stream events back to the event loop, and stop when cancelled;
* `protocol` - OpenAI's request bodies (typed, unknown fields refused), response and chunk
  shapes, and its error JSON;
* `generation` - a request's prompt ids -> `Engine.generate_ids` -> per-token events (text
  pieces through the engine's `TextStream`, log-probabilities, finish reasons);
* `app` - the FastAPI application (`create_app`) and `run_server` (uvicorn);
* `static/` - the playground page, served at `/` (no network needed: every file ships here).
"""
