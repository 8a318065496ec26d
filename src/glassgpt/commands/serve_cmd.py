"""`glassgpt serve`: a model behind OpenAI's API, look-inside endpoints and a playground page."""

from __future__ import annotations

import argparse

from glassgpt.commands.common import (
    add_device_option,
    add_model_option,
    add_quantize_option,
    positive_int,
)
from glassgpt.errors import GlassError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model: OpenAI-compatible API, look-inside endpoints, a playground page",
        description="Serve a model over HTTP: OpenAI's /v1/models, /v1/completions and (for chat "
        "models) /v1/chat/completions, the look views under /look/, and a playground page at /. "
        "Requests wait in a bounded queue for the model (429 when it is full).",
    )
    add_model_option(p)
    add_quantize_option(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 = every network)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on /v1 and /look (default: no key)")
    p.add_argument("--max-tokens", type=positive_int, default=1024, help="most new tokens per choice (default 1024)")
    p.add_argument("--max-n", type=positive_int, default=8, help="most choices per request (default 8)")
    p.add_argument("--max-prompt-tokens", type=positive_int, default=None,
                   help="longest prompt in tokens (default: the model's context less one)")
    p.add_argument("--max-queue", type=positive_int, default=64,
                   help="requests that may wait for the model; more get 429 (default 64)")
    add_device_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from glassgpt.commands.common import device, for_decoding, model_path
    from glassgpt.runs import load_run
    from glassgpt.serve.app import listen, run_server
    from glassgpt.serve.limits import ServeLimits

    if not 0 <= args.port <= 65535:
        raise GlassError(f"--port must be in 0..65535, got {args.port}")
    limits = ServeLimits(max_prompt_tokens=args.max_prompt_tokens, max_tokens=args.max_tokens,
                         max_n=args.max_n, max_queue=args.max_queue)
    path = model_path(args)
    sock = listen(args.host, args.port)  # first: a taken port fails before the model loads
    try:
        run_ = load_run(path, device(args))
    except BaseException:
        sock.close()
        raise
    run_.model.float()
    for_decoding(run_.model, args)  # in place: the engine and the look views use the same model

    def ready(url: str) -> None:
        print(f"glassgpt serve: {path} ({run_.config.stage}) at {url}  (OpenAI API: {url}v1, "
              "playground: that URL in a browser; Ctrl+C stops)", flush=True)

    run_server(run_, sock, limits, args.api_key, on_ready=ready)
    return 0
