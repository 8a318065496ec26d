"""The HTTP application: OpenAI's API, the look-inside endpoints and the playground, over one model.

`create_app(run, limits, api_key)` builds a FastAPI app around a loaded run; `run_server` serves
it with uvicorn. Handlers only translate: a request is checked (types by `protocol`, ranges
against `ServeLimits`), turned into prompt ids (the tokenizer, or the chat template for a chat
model), and handed to the `Scheduler` as a job (generation through `generation`, look views
through the same `glassgpt.explain.look.views` functions and JSON as `glassgpt look --json`).
Every failure a client can cause is answered in OpenAI's error JSON with a 4xx, and the server
keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from glassgpt.chat_template import ChatTokens, is_chat_stage, render_prompt
from glassgpt.engine import Engine, SamplingConfig
from glassgpt.errors import GlassError
from glassgpt.explain.look import views
from glassgpt.runs import LoadedRun, RunFolder
from glassgpt.serve.generation import (
    FinishEvent,
    GenerationSummary,
    TokenEvent,
    chat_logprobs,
    completion_logprobs,
    generation_work,
)
from glassgpt.serve.limits import ServeLimits
from glassgpt.serve.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    describe_validation_errors,
    new_id,
    now,
    sse,
    usage,
)
from glassgpt.serve.scheduler import Busy, Done, Failed, Job, Scheduler
from glassgpt.tokenizer import Tokenizer

log = logging.getLogger("glassgpt.serve")
STATIC = resources.files("glassgpt.serve") / "static"
MAX_STOP_STRINGS = 4  # as OpenAI
PROTECTED = ("/v1/", "/look/")  # what needs the bearer token when the server has one


@dataclass
class Served:
    """The model being served and everything a handler needs to use it."""

    run: LoadedRun
    engine: Engine
    limits: ServeLimits
    scheduler: Scheduler
    model_id: str
    chat: bool
    info: views.ModelInfo
    # The tokenizer's slow path flips a flag while encoding: encode under this lock, on any thread.
    tokenizer_lock: threading.Lock

    @property
    def tokenizer(self) -> Tokenizer:
        return self.run.tokenizer

    def check_model(self, name: str) -> None:
        if name != self.model_id:
            raise APIError(404, f"model '{name}' is not served here: this server serves '{self.model_id}' "
                                "(see GET /v1/models)", param="model", code="model_not_found")

    def encode(self, text: str) -> list[int]:
        with self.tokenizer_lock:
            return self.tokenizer.encode(text)

    def check_prompt_length(self, ids: list[int]) -> None:
        limit = self.limits.prompt_tokens(self.run.model.config.context_length)
        if len(ids) > limit:
            raise APIError(400, f"the prompt is {len(ids)} tokens, over this server's limit of {limit} "
                                f"(the model's context is {self.run.model.config.context_length}): shorten it",
                           param="prompt", code="context_length_exceeded")

    def submit(self, work: Callable[[Job], Any]) -> Job:
        try:
            return self.scheduler.submit(Job(work, asyncio.get_running_loop()))
        except Busy as err:
            raise APIError(429, str(err), type="rate_limit_error", code="queue_full") from None

    async def look(self, compute: Callable[[], Any]) -> Any:
        """Run a look view's computation on the worker thread (it hooks into the shared model)."""

        def work(job: Job) -> Any:
            with self.tokenizer_lock:
                return compute()

        return await self.submit(work).result()


def _check_range(name: str, value: float, low: float, high: float, fix: str) -> None:
    if not low <= value <= high:
        raise APIError(400, f"{name} must be between {low:g} and {high:g}, got {value:g}: {fix}", param=name)


def sampling_of(body: CompletionRequest | ChatCompletionRequest, max_tokens: int | None,
                default_max_tokens: int, limits: ServeLimits) -> SamplingConfig:
    """The engine's sampling settings for a request, or an APIError naming the bad field."""
    max_tokens = default_max_tokens if max_tokens is None else max_tokens
    _check_range("max_tokens", max_tokens, 1, limits.max_tokens,
                 "ask for fewer new tokens (or start the server with a larger --max-tokens)")
    _check_range("temperature", body.temperature, 0, 2, "0 = greedy, 1 = the model's own distribution")
    if not 0 < body.top_p <= 1:
        raise APIError(400, f"top_p must be in (0, 1], got {body.top_p:g}: 1 = off", param="top_p")
    if body.top_k < 0:
        raise APIError(400, f"top_k must be >= 0, got {body.top_k}: 0 = off", param="top_k")
    _check_range("n", body.n, 1, limits.max_n, "ask for fewer choices (or start the server with a larger --max-n)")
    stops = body.stop_strings()
    if len(stops) > MAX_STOP_STRINGS or any(not s for s in stops):
        raise APIError(400, f"stop takes 1 to {MAX_STOP_STRINGS} non-empty strings, got {list(stops)!r}",
                       param="stop")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(body, name) != 0:
            raise APIError(400, f"{name} is not supported by glassgpt: leave it out (or 0)", param=name)
    return SamplingConfig(temperature=body.temperature, top_k=body.top_k, top_p=body.top_p,
                          max_new_tokens=max_tokens, num_samples=body.n, seed=body.seed, stop=stops,
                          stop_at_eos=not body.ignore_eos)


def _top_count(value: int | None, limits: ServeLimits, name: str) -> int:
    if value is None:
        return 0
    _check_range(name, value, 0, limits.max_top_logprobs, "ask for fewer alternatives per token")
    return value


# ----------------------------------------------------------------------------- responses


class _Choices:
    """Collects a job's events per choice (for a whole, non-streamed response)."""

    def __init__(self) -> None:
        self.tokens: dict[int, list[TokenEvent]] = defaultdict(list)
        self.finishes: dict[int, FinishEvent] = {}
        self.summary: GenerationSummary | None = None

    def text(self, index: int) -> str:
        return "".join(e.text for e in self.tokens[index]) + self.finishes[index].text

    def indices(self) -> list[int]:
        return sorted(self.finishes)


async def _cancel_on_disconnect(request: Request, job: Job) -> None:
    """Wait for the client to hang up, then cancel its job (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            job.cancel()
            return


async def _collect(request: Request, job: Job) -> _Choices:
    choices = _Choices()
    watcher = asyncio.create_task(_cancel_on_disconnect(request, job))
    try:
        async for event in job.events():
            if isinstance(event, TokenEvent):
                choices.tokens[event.index].append(event)
            elif isinstance(event, FinishEvent):
                choices.finishes[event.index] = event
            elif isinstance(event, Failed):
                raise event.error
            elif isinstance(event, Done):
                choices.summary = event.result
    finally:
        watcher.cancel()
        job.cancel()  # a no-op for a finished job; stops it if this request was cancelled
    return choices


async def _stream(job: Job, chunk: Callable[[Any], dict | None], include_usage: bool,
                  usage_chunk: Callable[[GenerationSummary], dict]) -> AsyncIterator[str]:
    """Server-sent events of a job, ending in `data: [DONE]`; the job stops if the client leaves."""
    try:
        async for event in job.events():
            if isinstance(event, Failed):
                if not isinstance(event.error, asyncio.CancelledError):
                    yield sse(_error_of(event.error).body())
                break
            if isinstance(event, Done):
                if include_usage:
                    yield sse(usage_chunk(event.result))
                break
            data = chunk(event)
            if data is not None:
                yield sse(data)
        yield sse("[DONE]")
    finally:
        job.cancel()  # the client left (the task was cancelled) or the stream ended: either way, stop


def _error_of(err: BaseException) -> APIError:
    if isinstance(err, APIError):
        return err
    if isinstance(err, GlassError):
        return APIError(400, str(err))
    log.error("internal error: %r", err)
    return APIError(500, "internal error: the server's log has the details", type="server_error")


# ----------------------------------------------------------------------------- look requests


class _LookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextLook(_LookRequest):
    text: StrictStr


class NextLook(_LookRequest):
    text: StrictStr | None = None
    ids: list[StrictInt] | None = None  # instead of text: bos + token ids (the page's "step")
    top: StrictInt = 10
    temperatures: list[float] | None = None
    top_k: StrictInt = 0
    top_p: float = 1.0


class AttentionLook(TextLook):
    layer: StrictInt | None = None
    head: StrictInt | None = None
    position: StrictInt = -1
    top: StrictInt = 3


class PipelineLook(TextLook):
    top: StrictInt = 5


class EmbeddingsLook(_LookRequest):
    near: list[StrictStr] | None = None
    analogy: list[StrictStr] | None = None
    expect: StrictStr | None = None
    map: list[StrictStr] | None = None
    sentences: list[StrictStr] | None = None
    top: StrictInt = 10


MAX_LOOK_TOP = 100


class BearerToken:
    """ASGI middleware: requests under `PROTECTED` need 'Authorization: Bearer <api_key>' (else 401).

    Plain ASGI rather than an http middleware, so streamed responses and disconnects pass untouched.
    """

    def __init__(self, app: Any, api_key: str) -> None:
        self.app, self.key = app, api_key.encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PROTECTED):
            given = dict(scope["headers"]).get(b"authorization", b"")
            token = given[7:] if given[:7].lower() == b"bearer " else b""
            if not hmac.compare_digest(token, self.key):
                what = "a wrong API key" if token else "no API key"
                error = APIError(401, f"{what}: send the server's key as 'Authorization: Bearer KEY'",
                                 code="invalid_api_key")
                response = JSONResponse(error.body(), status_code=401, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# ----------------------------------------------------------------------------- the app


def create_app(run: LoadedRun, limits: ServeLimits | None = None, api_key: str | None = None,
               model_id: str | None = None) -> FastAPI:
    """An ASGI app serving `run`'s model; its worker thread starts now and stops with the app."""
    limits = limits or ServeLimits()
    engine = Engine(run.model, run.tokenizer)
    served = Served(
        run=run, engine=engine, limits=limits, scheduler=Scheduler(limits.max_queue),
        model_id=model_id or run.path.name, chat=is_chat_stage(run.config.stage),
        info=views.model_info(run.model, run.tokenizer, run.path, run.config.preset, run.step),
        tokenizer_lock=threading.Lock(),
    )
    if served.chat:
        ChatTokens.of(run.tokenizer)  # a chat-stage model whose tokenizer lacks the tokens: say so now

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        served.scheduler.close()

    # No /docs page: FastAPI's loads its scripts from a CDN, and nothing here needs the network.
    # The schema itself is at /openapi.json.
    app = FastAPI(title="glassgpt", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.served = served

    # -------------------------------------------------------------- errors and auth

    @app.exception_handler(APIError)
    async def api_error(_: Request, err: APIError) -> JSONResponse:
        headers = {"Retry-After": "1"} if err.status == 429 else None
        if err.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse(err.body(), status_code=err.status, headers=headers)

    @app.exception_handler(GlassError)
    async def glass_error(request: Request, err: GlassError) -> JSONResponse:
        return await api_error(request, APIError(400, str(err)))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        message, param = describe_validation_errors(list(err.errors()))
        return await api_error(request, APIError(400, message, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = {404: f"no such endpoint: {request.url.path} (see /openapi.json)",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(err.status_code, str(err.detail))
        return await api_error(request, APIError(err.status_code, message, code=str(err.status_code)))

    @app.exception_handler(Exception)
    async def crashed(request: Request, err: Exception) -> JSONResponse:
        return await api_error(request, _error_of(err))

    if api_key is not None:
        app.add_middleware(BearerToken, api_key=api_key)

    # -------------------------------------------------------------- the page and health

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": served.model_id, "chat": served.chat, "auth": api_key is not None,
                **served.scheduler.snapshot()}

    # -------------------------------------------------------------- OpenAI: models

    def model_card() -> dict[str, Any]:
        created = int(RunFolder(run.path).weights_path.stat().st_mtime) if RunFolder(run.path).has_weights() else 0
        return {"id": served.model_id, "object": "model", "created": created, "owned_by": "glassgpt"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name}")
    async def get_model(name: str) -> dict[str, Any]:
        served.check_model(name)
        return model_card()

    # -------------------------------------------------------------- OpenAI: completions

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        served.check_model(body.model)
        sampling = sampling_of(body, body.max_tokens, 16, limits)
        if body.echo:
            raise APIError(400, "echo is not supported by glassgpt: leave it out (the prompt is yours already)",
                           param="echo")
        top = _top_count(body.logprobs, limits, "logprobs")
        prompts = _completion_prompts(served, body.prompt)
        job = served.submit(generation_work(engine, prompts, sampling, (), top, served.scheduler.count_tokens))
        rid, created = new_id("cmpl"), now()

        def envelope(choices: list[dict], **extra: Any) -> dict:
            return {"id": rid, "object": "text_completion", "created": created, "model": served.model_id,
                    "choices": choices, **extra}

        if body.stream:
            offsets: dict[int, int] = defaultdict(int)

            def chunk(event: Any) -> dict | None:
                if isinstance(event, TokenEvent):
                    if not event.text and body.logprobs is None:
                        return None
                    lp = completion_logprobs(run.tokenizer, [event], offsets[event.index]) \
                        if body.logprobs is not None else None
                    offsets[event.index] += len(event.text)
                    return envelope([{"index": event.index, "text": event.text, "logprobs": lp,
                                      "finish_reason": None}])
                if isinstance(event, FinishEvent):
                    return envelope([{"index": event.index, "text": event.text, "logprobs": None,
                                      "finish_reason": event.finish_reason}])
                return None

            include = bool(body.stream_options and body.stream_options.include_usage)
            return _event_stream(_stream(job, chunk, include, lambda s: envelope(
                [], usage=usage(s.prompt_tokens, s.completion_tokens))))

        got = await _collect(request, job)
        assert got.summary is not None
        return envelope([
            {"index": i, "text": got.text(i), "finish_reason": got.finishes[i].finish_reason,
             "logprobs": completion_logprobs(run.tokenizer, got.tokens[i]) if body.logprobs is not None else None}
            for i in got.indices()
        ], usage=usage(got.summary.prompt_tokens, got.summary.completion_tokens))

    # -------------------------------------------------------------- OpenAI: chat

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        served.check_model(body.model)
        if not served.chat:
            raise APIError(400, f"'{served.model_id}' is a base model (stage {run.config.stage}), not tuned for "
                                "chat: use /v1/completions, or serve a chat model (stage sft or rl)",
                           param="model", code="not_a_chat_model")
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        sampling = sampling_of(body, max_tokens, limits.default_chat_max_tokens, limits)
        if body.top_logprobs is not None and not body.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        top = _top_count(body.top_logprobs, limits, "top_logprobs")
        messages = []
        for i, message in enumerate(body.messages):
            text = message.text()
            if text is None:
                raise APIError(400, f"message {i + 1} has non-text content: glassgpt models read text only",
                               param="messages")
            messages.append({"role": message.role, "content": text})
        with served.tokenizer_lock:
            prompt = render_prompt(run.tokenizer, messages)  # GlassError (-> 400) for a bad conversation
        served.check_prompt_length(prompt)
        stop_ids = [ChatTokens.of(run.tokenizer).assistant_end]
        job = served.submit(generation_work(engine, [prompt], sampling, stop_ids, top,
                                            served.scheduler.count_tokens))
        rid, created = new_id("chatcmpl"), now()

        def envelope(obj: str, choices: list[dict], **extra: Any) -> dict:
            return {"id": rid, "object": obj, "created": created, "model": served.model_id,
                    "choices": choices, **extra}

        if body.stream:
            started: set[int] = set()

            def chunk(event: Any) -> dict | None:
                if isinstance(event, TokenEvent):
                    if not event.text and not body.logprobs:
                        return None
                    delta: dict[str, Any] = {"content": event.text}
                    if event.index not in started:
                        started.add(event.index)
                        delta = {"role": "assistant", **delta}
                    lp = chat_logprobs(run.tokenizer, [event]) if body.logprobs else None
                    return envelope("chat.completion.chunk",
                                    [{"index": event.index, "delta": delta, "logprobs": lp, "finish_reason": None}])
                if isinstance(event, FinishEvent):
                    delta = {"content": event.text} if event.text else {}
                    if event.index not in started:
                        started.add(event.index)
                        delta = {"role": "assistant", "content": event.text}
                    return envelope("chat.completion.chunk", [{"index": event.index, "delta": delta,
                                                               "logprobs": None,
                                                               "finish_reason": event.finish_reason}])
                return None

            include = bool(body.stream_options and body.stream_options.include_usage)
            return _event_stream(_stream(job, chunk, include, lambda s: envelope(
                "chat.completion.chunk", [], usage=usage(s.prompt_tokens, s.completion_tokens))))

        got = await _collect(request, job)
        assert got.summary is not None
        return envelope("chat.completion", [
            {"index": i, "message": {"role": "assistant", "content": got.text(i)},
             "logprobs": chat_logprobs(run.tokenizer, got.tokens[i]) if body.logprobs else None,
             "finish_reason": got.finishes[i].finish_reason}
            for i in got.indices()
        ], usage=usage(got.summary.prompt_tokens, got.summary.completion_tokens))

    # -------------------------------------------------------------- look inside

    model, tokenizer = run.model, run.tokenizer
    context = model.config.context_length

    def text_ids(text: str) -> list[int]:
        return views.encode_text(tokenizer, text, context)

    def check_top(top: int) -> None:
        if not 1 <= top <= MAX_LOOK_TOP:
            raise APIError(400, f"top must be between 1 and {MAX_LOOK_TOP}, got {top}", param="top")

    @app.get("/look/model")
    async def look_model() -> dict[str, Any]:
        """Model facts for the page: size and shape, tokenizer, lineage, the training curve."""
        metrics = RunFolder(run.path).read_metrics()
        curve = [{k: r[k] for k in ("step", "train_loss", "val_loss", "val_bpb") if k in r} for r in metrics]
        return {"model": views.to_jsonable(served.info), "id": served.model_id, "stage": run.config.stage,
                "parent": run.config.parent, "chat": served.chat, "curve": curve,
                "limits": limits.to_dict(), "special_tokens": sorted(tokenizer.special_ids)}

    @app.post("/look/next")
    async def look_next(body: NextLook) -> dict[str, Any]:
        check_top(body.top)
        if (body.text is None) == (body.ids is None):
            raise APIError(400, "give either 'text' or 'ids'", param="text")
        temperatures = tuple(body.temperatures) if body.temperatures is not None else views.TEMPERATURES
        if not 1 <= len(temperatures) <= 8 or any(not 0 <= t <= 10 for t in temperatures):
            raise APIError(400, "temperatures takes 1 to 8 values between 0 and 10", param="temperatures")
        if body.top_k < 0 or not 0 < body.top_p <= 1:
            raise APIError(400, f"top_k must be >= 0 and top_p in (0, 1], got {body.top_k} and {body.top_p:g}")
        if body.ids is not None:
            ids = body.ids
            if not ids or len(ids) > context or any(not 0 <= i < tokenizer.vocab_size for i in ids):
                raise APIError(400, f"ids must be 1 to {context} token ids in 0..{tokenizer.vocab_size - 1}",
                               param="ids")
        else:
            with served.tokenizer_lock:
                ids = text_ids(body.text or "")
        table = await served.look(lambda: views.next_table(model, tokenizer, ids, body.top, temperatures,
                                                           body.top_k, body.top_p))
        return views.view_json("next", served.info, table)

    @app.post("/look/attention")
    async def look_attention(body: AttentionLook) -> dict[str, Any]:
        check_top(body.top)
        view = await served.look(lambda: views.attention_view(model, tokenizer, text_ids(body.text), body.layer,
                                                              body.head, body.position, body.top))
        return views.view_json("attention", served.info, view)

    @app.post("/look/trajectory")
    async def look_trajectory(body: TextLook) -> dict[str, Any]:
        view = await served.look(lambda: views.trajectory_view(model, tokenizer, text_ids(body.text)))
        return views.view_json("trajectory", served.info, view)

    @app.post("/look/pipeline")
    async def look_pipeline(body: PipelineLook) -> dict[str, Any]:
        check_top(body.top)
        view = await served.look(lambda: views.pipeline_view(model, tokenizer, text_ids(body.text), body.top))
        return views.view_json("pipeline", served.info, view)

    @app.post("/look/embeddings")
    async def look_embeddings(body: EmbeddingsLook) -> dict[str, Any]:
        check_top(body.top)
        if body.expect and not body.analogy:
            raise APIError(400, "expect goes with analogy: [A, B, C]", param="expect")
        for name in ("near", "map", "sentences"):
            if len(getattr(body, name) or ()) > 64:
                raise APIError(400, f"{name} takes at most 64 entries", param=name)
        view = await served.look(lambda: views.embeddings_view(
            model, tokenizer, near=body.near, analogy_words=body.analogy, expect=body.expect,
            map_words=body.map, sentences=body.sentences, top=body.top))
        return views.view_json("embeddings", served.info, view)

    return app


def _event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _completion_prompts(served: Served, prompt: str | list[str] | list[int]) -> list[list[int]]:
    """Each prompt as ids: a text gets bos + its tokens; a list of ids is read as given."""
    vocab = served.tokenizer.vocab_size
    if isinstance(prompt, str):
        texts = [prompt]
    elif prompt and all(isinstance(p, int) for p in prompt):
        if bad := [i for i in prompt if not 0 <= i < vocab]:
            raise APIError(400, f"prompt token ids must be in 0..{vocab - 1}, got {bad[:5]}", param="prompt")
        served.check_prompt_length(list(prompt))
        return [list(prompt)]
    else:
        texts = list(prompt)
    if not 1 <= len(texts) <= served.limits.max_prompts:
        raise APIError(400, f"prompt takes a text, 1 to {served.limits.max_prompts} texts or a list of token ids, "
                            f"got {len(texts)} texts", param="prompt")
    prompts = []
    for text in texts:
        ids = [served.tokenizer.bos_id, *served.encode(text)]
        served.check_prompt_length(ids)
        prompts.append(ids)
    return prompts


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 = any free port), or a GlassError naming the fix."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise GlassError(f"cannot listen on {host}:{port} ({err.strerror or err}): "
                         "pick another --port (or --host), or stop what uses it") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run_server(run: LoadedRun, sock: socket.socket, limits: ServeLimits | None = None,
               api_key: str | None = None, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve `run` on the listening socket `sock` (see `listen`) until interrupted; `on_ready(url)`
    is called once the server accepts requests."""
    import uvicorn

    app = create_app(run, limits, api_key)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started and on_ready is not None:
            on_ready(url_of(sock))
        await task

    try:
        asyncio.run(serve())
    finally:
        sock.close()
