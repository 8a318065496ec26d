"""What one request may ask of the server: typed, validated limits with the flag that raises each."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from glassgpt.errors import GlassError


@dataclass(frozen=True)
class ServeLimits:
    """Bounds that keep one request from taking the server (and its memory) for itself.

    `max_prompt_tokens` None means the model's context less one (room for one new token).
    """

    max_prompt_tokens: int | None = None
    max_tokens: int = 1024  # the most new tokens one choice may ask for
    max_n: int = 8  # the most choices per prompt
    max_prompts: int = 8  # the most prompts in one /v1/completions request
    max_top_logprobs: int = 20
    max_queue: int = 64  # requests waiting for the model; one more gets 429
    default_chat_max_tokens: int = 256  # when a chat request does not say (completions: 16, as OpenAI)

    def __post_init__(self) -> None:
        for name in ("max_tokens", "max_n", "max_prompts", "max_queue", "default_chat_max_tokens"):
            if getattr(self, name) < 1:
                raise GlassError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise GlassError(f"max-prompt-tokens must be at least 1, got {self.max_prompt_tokens}")
        if self.max_top_logprobs < 0:
            raise GlassError(f"max-top-logprobs must be >= 0, got {self.max_top_logprobs}")

    def prompt_tokens(self, context_length: int) -> int:
        """The longest prompt (in tokens, bos included) for a model with this context."""
        fits = max(1, context_length - 1)
        return fits if self.max_prompt_tokens is None else min(self.max_prompt_tokens, fits)

    def to_dict(self) -> dict[str, int | None]:
        return asdict(self)
