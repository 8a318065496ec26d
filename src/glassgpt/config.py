"""Typed, validated configuration: the model's shape, the training recipe, and named presets.

Every config is a frozen dataclass that checks itself on creation, and round-trips through
plain JSON (each run folder carries its config as `config.json`, with a `format_version` and
its lineage: the `stage` that made it and the `parent` run it started from). Presets are just
named instances. `RunConfig.with_overrides` and `RunConfig.for_resume` are the one home of the
rules for changing a config (the CLI, scripts and later the server all use them).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from glassgpt.errors import GlassError
from glassgpt.tokenizer import GPT2_VOCAB_SIZE

# What a repeated training window repeats (`glassgpt.data.batches`).
REPEAT_SOURCES = ("passage", "scattered", "random")
# How a new model's projections into the residual stream start (`TrainConfig.residual_init`).
RESIDUAL_INITS = ("scaled", "zero")
#: Training's float32 matmul kernels on CPUs (`TrainConfig.matmul`, `glassgpt.matmul`): "auto" measures
#: PyTorch's own against oneDNN's at start-up; "aten" and "onednn" force one.
MATMUL_SETTINGS = ("auto", "aten", "onednn")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise GlassError(message)


@dataclass(frozen=True)
class ModelConfig:
    """The transformer's shape: a Llama-style decoder (RMSNorm, RoPE, SwiGLU, no biases) by default.

    Four switches (`norm`, `position`, `mlp`, `bias`) turn it into GPT-2's architecture; they
    exist so that GPT-2's weights can be imported (`glassgpt.interop`) and a reader sees in
    `glassgpt.model` exactly where the two differ.
    """

    vocab_size: int = 4096
    context_length: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 0  # 0 = n_head; fewer than n_head means grouped-query attention
    d_model: int = 256
    mlp_hidden: int = 0  # 0 = the default width, `default_mlp_hidden`
    rope_theta: float = 10000.0
    # Llama 3.1's RoPE scaling ("llama3"), only for imported models: rotations slower than the
    # original context are slowed down by `rope_scaling_factor`, faster ones kept, a smooth blend
    # between (`glassgpt.model.rope_frequencies`). 1.0 = off, as in Llama 1-3 and glassgpt's models.
    rope_scaling_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_context: int = 8192
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    norm: str = "rmsnorm"  # "rmsnorm" (Llama: x / rms(x) * gain) | "layernorm" (GPT-2: centred, gain and bias)
    position: str = "rope"  # "rope" (Llama: q and k rotated) | "learned" (GPT-2: a trained vector per position)
    mlp: str = "swiglu"  # "swiglu" (Llama: gated) | "gelu" (GPT-2: up, tanh-approximated GELU, down)
    bias: bool = False  # biases in every linear layer but the output layer (GPT-2: True)

    def __post_init__(self) -> None:
        if self.n_kv_head == 0:
            object.__setattr__(self, "n_kv_head", self.n_head)
        for name in ("vocab_size", "context_length", "n_layer", "n_head", "n_kv_head", "d_model"):
            _require(getattr(self, name) >= 1, f"model {name} must be >= 1, got {getattr(self, name)}")
        _require(
            self.d_model % self.n_head == 0,
            f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})",
        )
        _require(
            self.n_head % self.n_kv_head == 0,
            f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})",
        )
        _require(self.norm in ("rmsnorm", "layernorm"), f"norm must be rmsnorm or layernorm, got {self.norm!r}")
        _require(self.position in ("rope", "learned"), f"position must be rope or learned, got {self.position!r}")
        _require(self.mlp in ("swiglu", "gelu"), f"mlp must be swiglu or gelu, got {self.mlp!r}")
        if self.position == "rope":
            _require(self.head_dim % 2 == 0, f"head size d_model/n_head must be even for RoPE, got {self.head_dim}")
        _require(self.rope_scaling_factor >= 1.0, f"rope_scaling_factor must be >= 1 (1 = off), got {self.rope_scaling_factor}")
        if self.rope_scaling_factor != 1.0:
            _require(0 < self.rope_low_freq_factor < self.rope_high_freq_factor,
                     f"RoPE scaling needs 0 < low_freq_factor < high_freq_factor, got {self.rope_low_freq_factor} "
                     f"and {self.rope_high_freq_factor}")
            _require(self.rope_original_context >= 1,
                     f"rope_original_context must be >= 1, got {self.rope_original_context}")
        _require(self.mlp_hidden >= 0, f"mlp_hidden must be >= 0, got {self.mlp_hidden}")
        if self.mlp_hidden == 0:
            object.__setattr__(self, "mlp_hidden", self.default_mlp_hidden())

    def default_mlp_hidden(self) -> int:
        """The MLP width `mlp_hidden = 0` stands for: 4 x d_model for GELU; for SwiGLU, whose three
        matrices at 8/3 x cost what GELU's two at 4x do, 8/3 x d_model rounded up to a multiple of 64."""
        return 4 * self.d_model if self.mlp == "gelu" else 64 * math.ceil(8 * self.d_model / 3 / 64)

    @property
    def is_llama(self) -> bool:
        """Llama's architecture (what `export-hf` writes): RMSNorm, RoPE and SwiGLU."""
        return (self.norm, self.position, self.mlp) == ("rmsnorm", "rope", "swiglu")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def _block_matmul_parameters(self) -> int:
        """Weights of the blocks' matrices (q/k/v, attention output, MLP), all layers."""
        d, hd = self.d_model, self.head_dim
        attn = d * (self.n_head + 2 * self.n_kv_head) * hd + self.n_head * hd * d
        mlp = (3 if self.mlp == "swiglu" else 2) * d * self.mlp_hidden
        return self.n_layer * (attn + mlp)

    def num_parameters(self, include_embeddings: bool = True) -> int:
        """Parameter count computed from the shape (equals the model's, tested).

        Embeddings are the token table, a learned position table and an untied output layer.
        """
        d, hd = self.d_model, self.head_dim
        norm = d * (2 if self.norm == "layernorm" else 1)  # gain (and bias) of one norm
        biases = 0
        if self.bias:
            mlp_biases = (2 if self.mlp == "swiglu" else 1) * self.mlp_hidden + d
            biases = (self.n_head + 2 * self.n_kv_head) * hd + d + mlp_biases
        body = self._block_matmul_parameters() + self.n_layer * (2 * norm + biases) + norm
        embeddings = self.vocab_size * d * (1 if self.tie_embeddings else 2)
        if self.position == "learned":
            embeddings += self.context_length * d
        return body + (embeddings if include_embeddings else 0)

    def flops_per_token(self) -> int:
        """Training FLOPs per token (forward + backward = 3x forward), matmuls only: the weights'
        and attention's."""
        return self.weight_flops_per_token() + self.attention_flops_per_token()

    def weight_flops_per_token(self) -> int:
        """6 x the parameters used in matmuls (the blocks' matrices and the output layer; the
        embedding lookup is not a matmul): 2 per weight forward, 4 backward."""
        return 6 * (self._block_matmul_parameters() + self.vocab_size * self.d_model)

    def attention_flops_per_token(self) -> int:
        """Attention's QK^T and AV at the full context, forward + backward (3x the forward's)."""
        return 3 * 2 * 2 * self.n_layer * self.context_length * self.d_model


@dataclass(frozen=True)
class TokenizerConfig:
    """Which tokenizer to build: byte-level BPE trained on the data, characters, or GPT-2's."""

    kind: str = "bpe"  # "bpe" | "char" | "gpt2"
    vocab_size: int = 4096  # for "bpe" only; includes the reserved special tokens

    def __post_init__(self) -> None:
        _require(
            self.kind in ("bpe", "char", "gpt2"),
            f"tokenizer must be bpe, char or gpt2, got {self.kind!r}",
        )
        _require(self.vocab_size >= 300, f"tokenizer vocab size must be >= 300, got {self.vocab_size}")


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe: optimiser, schedule, batch, budget, evaluation and saving."""

    batch_size: int = 16  # sequences per micro-batch
    grad_accum: int = 1  # micro-batches per optimiser step
    max_steps: int = 2000
    time_budget_min: float = 0.0  # 0 = no time budget; training stops at whichever comes first
    optimizer: str = "adamw"  # "adamw" | "muon" (Muon for the blocks' matrices, AdamW for the rest)
    lr: float = 3e-3  # AdamW's peak learning rate (with "muon": for embeddings, output layer, norms)
    muon_lr: float = 0.02  # Muon's peak learning rate, for the blocks' matrices (torch's "original" scaling)
    muon_momentum: float = 0.95
    # Torch's Muon shrinks weights by muon_lr * weight decay per step: with muon_lr ~7x AdamW's lr,
    # AdamW's 0.1 would decay the matrices ~7x faster than AdamW does; 0.01 keeps the shrink close.
    muon_weight_decay: float = 0.01
    schedule: str = "cosine"  # "cosine" | "wsd" (warmup, stable at the peak, linear decay at the end)
    decay_fraction: float = 0.2  # "wsd": the last fraction of progress that decays the learning rate
    min_lr_ratio: float = 0.1  # the schedule decays to (peak lr) * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.1  # AdamW's, on matrices and embeddings (never on norm gains)
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 = no clipping
    # How a new model's projections into the residual stream start: "scaled" (GPT-2's N(0, 0.02)
    # scaled down by depth) or "zero" (each block starts as the identity; `GPT.zero_residual_outputs`).
    residual_init: str = "scaled"
    # QK-clip (Kimi K2's MuonClip): after each step, a head whose largest attention logit passed
    # this gets its query/key weights scaled back to it (`glassgpt.train.optim.clip_attention_logits`).
    # 0 = off. The architecture is unchanged (still a plain Llama for export).
    qk_clip: float = 0.0
    # The share of training windows that are a passage repeated (`glassgpt.data.batches`): text
    # that repeats teaches copying from the context, which books alone did not (README). 0 = off.
    repeat_fraction: float = 0.0
    repeat_source: str = "passage"  # "passage" (a stretch of the corpus) | "scattered" (its tokens from anywhere) | "random"
    # How long a repeated passage is, in tokens, drawn uniformly between the two (0: a quarter and
    # a half of the window). Short passages said many times are where copying starts (README).
    repeat_min_period: int = 0
    repeat_max_period: int = 0
    eval_every: int = 100
    eval_tokens: int = 32768  # validation tokens per evaluation
    log_every: int = 10
    save_every: int = 500
    dtype: str = "auto"  # "auto" | "bf16" | "fp32" (auto = bf16 where the CPU/GPU runs it fast)
    compile: str = "auto"  # "auto" | "on" | "off"
    matmul: str = "auto"  # MATMUL_SETTINGS: training's float32 matmul kernel on CPUs
    seed: int = 1337
    val_fraction: float = 0.05

    def with_budget(self, **changes: Any) -> TrainConfig:
        """These fields changed; an explicit step count alone means exactly that many steps (no
        time limit), an explicit time budget alone is the only limit."""
        if "max_steps" in changes and "time_budget_min" not in changes:
            changes["time_budget_min"] = 0.0
        if "time_budget_min" in changes and "max_steps" not in changes:
            changes["max_steps"] = 10**9
        return dataclasses.replace(self, **changes)

    def __post_init__(self) -> None:
        for name in ("batch_size", "grad_accum", "max_steps", "eval_every", "log_every", "save_every"):
            _require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _require(self.time_budget_min >= 0, "time budget must be > 0 minutes")
        _require(self.lr > 0, f"learning rate must be > 0, got {self.lr}")
        _require(self.optimizer in ("adamw", "muon"), f"optimizer must be adamw or muon, got {self.optimizer!r}")
        _require(self.muon_lr > 0, f"muon_lr must be > 0, got {self.muon_lr}")
        _require(0 <= self.muon_momentum < 1, f"muon_momentum must be in [0, 1), got {self.muon_momentum}")
        _require(self.weight_decay >= 0 and self.muon_weight_decay >= 0, "weight decay must be >= 0")
        _require(self.schedule in ("cosine", "wsd"), f"schedule must be cosine or wsd, got {self.schedule!r}")
        _require(0 < self.decay_fraction <= 1, f"decay_fraction must be in (0, 1], got {self.decay_fraction}")
        _require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]")
        _require(self.warmup_steps >= 0, "warmup_steps must be >= 0")
        _require(self.residual_init in RESIDUAL_INITS,
                 f"residual_init must be {' or '.join(RESIDUAL_INITS)}, got {self.residual_init!r}")
        _require(self.grad_clip >= 0, "grad_clip must be >= 0 (0 turns clipping off)")
        _require(self.qk_clip >= 0, f"qk_clip must be >= 0 (0 turns it off), got {self.qk_clip}")
        _require(0 <= self.repeat_fraction < 1, f"repeat_fraction must be in [0, 1), got {self.repeat_fraction}")
        _require(self.repeat_source in REPEAT_SOURCES,
                 f"repeat_source must be {' or '.join(REPEAT_SOURCES)}, got {self.repeat_source!r}")
        for name in ("repeat_min_period", "repeat_max_period"):
            _require(getattr(self, name) == 0 or getattr(self, name) >= 2,
                     f"{name} must be >= 2 tokens (0 = the default), got {getattr(self, name)}")
        _require(not (self.repeat_min_period and self.repeat_max_period) or self.repeat_min_period <= self.repeat_max_period,
                 f"repeat_min_period ({self.repeat_min_period}) must not exceed repeat_max_period ({self.repeat_max_period})")
        _require(self.eval_tokens >= 1, "eval_tokens must be >= 1")
        _require(self.dtype in ("auto", "bf16", "fp32"), f"dtype must be auto, bf16 or fp32, got {self.dtype!r}")
        _require(self.compile in ("auto", "on", "off"), f"compile must be auto, on or off, got {self.compile!r}")
        _require(self.matmul in MATMUL_SETTINGS, f"matmul must be one of {', '.join(MATMUL_SETTINGS)}, got {self.matmul!r}")
        _require(0 < self.val_fraction < 1, "val_fraction must be between 0 and 1")


ADVANTAGES = ("mean", "std")  # how RL turns a group's rewards into advantages (`RLConfig.advantage`)


@dataclass(frozen=True)
class RLConfig:
    """Reinforcement learning's own settings (GRPO-style; see `glassgpt.train.rl`)."""

    # Built-in tasks to practise; default: addition, the reasoning task with no constant answer that
    # pays (practising letters made an earlier chat model answer "Answer: 1" to everything; README).
    tasks: tuple[str, ...] = ("addition",)
    group_size: int = 8  # samples per problem; advantages compare a sample with its group
    problems_per_step: int = 4
    max_response_tokens: int = 200  # a longer answer is cut, unrewarded ("truncated"); worked sums need <= 167
    temperature: float = 1.0  # sampling temperature of the practice answers
    heldout_problems: int = 30  # per task, for the held-out accuracy every `eval_every` steps
    # "mean": advantage = reward - group mean (Dr. GRPO); "std": also divided by the group's
    # standard deviation (GRPO as DeepSeekMath wrote it). Both measured on the shipped model (README).
    advantage: str = "mean"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))  # JSON gives a list
        _require(bool(self.tasks), "RL needs at least one task")
        _require(self.group_size >= 2, f"group size must be >= 2 (advantages compare samples of a problem), "
                                       f"got {self.group_size}")
        for name in ("problems_per_step", "max_response_tokens", "heldout_problems"):
            _require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _require(self.temperature > 0, f"RL's sampling temperature must be > 0, got {self.temperature}")
        _require(self.advantage in ADVANTAGES, f"advantage must be one of {', '.join(ADVANTAGES)}, got {self.advantage!r}")


#: The version of `config.json`'s layout; files without one are version 0 (before lineage).
FORMAT_VERSION = 1
#: How a run's weights came to be: trained from scratch on text, chat-tuned, RL-tuned, imported.
STAGES = ("pretrain", "sft", "rl", "import")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run folder's `config.json` holds: model, tokenizer, training recipe, lineage."""

    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "custom"
    data: str | None = None  # None = the built-in corpus
    stage: str = "pretrain"
    parent: str | None = None  # the run folder this one started from (None: from scratch)
    rl: RLConfig | None = None  # stage "rl" only

    def __post_init__(self) -> None:
        _require(self.stage in STAGES, f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        longest = max(self.train.repeat_min_period, self.train.repeat_max_period)
        _require(longest <= self.model.context_length,
                 f"a repeated passage of {longest} tokens does not fit the context of {self.model.context_length}: "
                 "give a shorter --repeat-min-period/--repeat-max-period")

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        version = raw.get("format_version", 0)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise GlassError(f"config.json has format version {version!r}, newer than this glassgpt "
                             f"reads ({FORMAT_VERSION}): upgrade glassgpt")
        try:
            return cls(
                model=ModelConfig(**raw["model"]),
                tokenizer=TokenizerConfig(**raw["tokenizer"]),
                train=TrainConfig(**raw["train"]),
                preset=raw.get("preset", "custom"),
                data=raw.get("data"),
                stage=raw.get("stage", "pretrain"),
                parent=raw.get("parent"),
                rl=RLConfig(**raw["rl"]) if raw.get("rl") is not None else None,
            )
        except (KeyError, TypeError) as err:
            raise GlassError(f"config.json does not describe a glassgpt run ({err})") from None

    def with_overrides(self, *, model: dict[str, Any] | None = None, tokenizer: dict[str, Any] | None = None,
                       train: dict[str, Any] | None = None, data: str | None = None) -> RunConfig:
        """This config with some fields changed, keeping the fields that depend on them consistent.

        - a GPT-2 tokenizer has GPT-2's vocabulary size, and the model's vocabulary follows the
          tokenizer's;
        - changing the number of heads alone keeps plain multi-head attention (kv heads = heads);
        - an MLP at its default width (`ModelConfig.default_mlp_hidden`) stays at the default width
          when d_model or the MLP kind changes, unless `mlp_hidden` is given too;
        - the training budget: see `TrainConfig.with_budget`.
        """
        model, tokenizer, train = dict(model or {}), dict(tokenizer or {}), dict(train or {})
        if ({"d_model", "mlp"} & model.keys() and "mlp_hidden" not in model
                and self.model.mlp_hidden == self.model.default_mlp_hidden()):
            model["mlp_hidden"] = 0  # derived again from the new fields
        if tokenizer.get("kind") == "gpt2":
            tokenizer["vocab_size"] = GPT2_VOCAB_SIZE
        new_tokenizer = dataclasses.replace(self.tokenizer, **tokenizer)
        if "n_head" in model and "n_kv_head" not in model:
            model["n_kv_head"] = model["n_head"]
        if tokenizer:
            model.setdefault("vocab_size", new_tokenizer.vocab_size)
        return dataclasses.replace(
            self,
            model=dataclasses.replace(self.model, **model),
            tokenizer=new_tokenizer,
            train=self.train.with_budget(**train),
            data=data if data is not None else self.data,
        )

    def for_finetune(self, *, stage: str, parent: str, train: TrainConfig, data: str | None,
                     rl: RLConfig | None = None) -> RunConfig:
        """A run that starts from this one's weights (chat tuning, RL): the same model and
        tokenizer, its own recipe and data, and the lineage `stage` and `parent`."""
        return dataclasses.replace(self, train=train, data=data, stage=stage, parent=parent, rl=rl)

    def for_resume(self, *, train: dict[str, Any] | None = None, changes_model: bool = False) -> RunConfig:
        """The saved config of a run being resumed: the model, tokenizer and data stay as saved,
        only the recipe (e.g. a longer budget) may change."""
        if changes_model:
            raise GlassError("--resume continues the saved model and data: drop the model/tokenizer/--data options")
        return dataclasses.replace(self, train=self.train.with_budget(**(train or {})))


PRESETS: dict[str, RunConfig] = {
    # Seconds: for tests and quick smoke runs.
    "tiny": RunConfig(
        model=ModelConfig(vocab_size=512, context_length=64, n_layer=2, n_head=4, n_kv_head=2, d_model=64),
        tokenizer=TokenizerConfig("bpe", 512),
        train=TrainConfig(batch_size=8, max_steps=40, lr=3e-3, warmup_steps=5, eval_every=20,
                          eval_tokens=2048, log_every=5, save_every=20),
        preset="tiny",
    ),
    # The demo: the best validation bits per byte we found in ~4 minutes of 2-core CPU training
    # (benchmarks/tune_demo.py; Muon + WSD and an 8k vocabulary beat AdamW + cosine at 4k; then
    # AdamW's lr for embeddings, output layer and gains 3e-3 -> 3e-2 and a 40% decay, -0.06; once
    # float32 matmuls ran on oneDNN, batch 64 instead of 32, -0.03; then d_model 96 with 3 heads
    # instead of 192 with 4, which trains on 2-2.5x the tokens in the same minutes: -0.04 here, and
    # -0.15 in a slow AVX2 laptop's minutes, where the 192-wide model lost to the 8-gram; with it
    # 10 warmup steps instead of 50).
    "demo": RunConfig(
        model=ModelConfig(vocab_size=8192, context_length=128, n_layer=4, n_head=3, n_kv_head=3, d_model=96),
        tokenizer=TokenizerConfig("bpe", 8192),
        train=TrainConfig(batch_size=64, max_steps=100_000, time_budget_min=4.0, optimizer="muon", schedule="wsd",
                          lr=3e-2, muon_lr=0.04, decay_fraction=0.4, warmup_steps=10, eval_every=100,
                          eval_tokens=32768, save_every=200),
        preset="demo",
    ),
    # About 10M parameters, for runs of hours: compiled on CPUs too (10-15% more tokens/s there,
    # benchmarks/bench_shapes.py --compile both), which pays back its tens of seconds of compiling.
    # 4 layers of 384 with 3 heads of 128: the fastest ~10M shape in bench_shapes.py, and at equal
    # training time it learned more than the earlier 6 x 320 with 5 heads of 64 (8, 20 and 40
    # minutes, four seeds; README "Training on this CPU").
    "small": RunConfig(
        model=ModelConfig(vocab_size=8192, context_length=256, n_layer=4, n_head=3, n_kv_head=3, d_model=384),
        tokenizer=TokenizerConfig("bpe", 8192),
        train=TrainConfig(batch_size=32, max_steps=5000, lr=2e-3, warmup_steps=100, eval_every=250, compile="on"),
        preset="small",
    ),
    # GPT-2 small's shape (124M parameters with GPT-2's 50,257-token vocabulary, tied embeddings).
    "gpt2": RunConfig(
        model=ModelConfig(vocab_size=GPT2_VOCAB_SIZE, context_length=1024, n_layer=12, n_head=12, n_kv_head=12,
                          d_model=768, mlp_hidden=2048),
        tokenizer=TokenizerConfig("gpt2", GPT2_VOCAB_SIZE),
        train=TrainConfig(batch_size=8, grad_accum=8, max_steps=20000, lr=6e-4, warmup_steps=700,
                          eval_every=500, save_every=1000),
        preset="gpt2",
    ),
}


def preset(name: str) -> RunConfig:
    """The named preset, or a clear error listing the choices."""
    if name not in PRESETS:
        raise GlassError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
