"""Optimizers and the learning-rate schedule every training stage uses.

Two recipes (`TrainConfig.optimizer`):
  "adamw"  one AdamW for every parameter; weight decay on matrices and embeddings only.
  "muon"   Muon for the hidden matrices (each block's qkv, out, gate_up (or up) and down weights), AdamW
           for the rest (embeddings, an untied output layer, the norm gains), stepped together
           as one `CombinedOptimizer`.

Every parameter group carries its own peak learning rate (`group["peak_lr"]`); the schedule
(`TrainConfig.schedule`: cosine or warmup-stable-decay) is a multiplier of it, so AdamW and
Muon groups follow the same shape at their own scale.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from glassgpt.config import TrainConfig
from glassgpt.errors import GlassError
from glassgpt.matmul import MatmulChoice, choose_matmul_kernel, mm_nt
from glassgpt.model import GPT, Attention
from glassgpt.runtime import SINGLE, Distributed, all_reduce, is_sharded, unwrap

#: The matrices Muon owns: the transformer blocks' hidden projections (not embeddings, not the
#: output layer, not norm gains: Muon's orthogonalised update suits matrices that map hidden
#: features to hidden features, not lookup tables or per-channel scales).
HIDDEN_MATRIX = re.compile(r"blocks\.\d+\.(attn\.(qkv|out)|mlp\.(gate_up|up|down))\.weight")


class CombinedOptimizer:
    """Several optimizers, each owning different parameters, stepped as one.

    Exposes what the training loop uses (`param_groups`, `step`, `zero_grad`) plus `state`,
    `state_dict` and `load_state_dict`. Iterating it yields the optimizers, so the name-keyed
    checkpoint functions (`torch.distributed.checkpoint.state_dict.get_optimizer_state_dict`,
    through `glassgpt.runtime.full_optimizer_state`) take it as their list of optimizers.
    """

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self.optimizers = tuple(optimizers)
        owned = [id(p) for opt in self.optimizers for g in opt.param_groups for p in g["params"]]
        if len(owned) != len(set(owned)):
            raise ValueError("a parameter is owned by more than one optimizer")

    def __iter__(self) -> Iterator[torch.optim.Optimizer]:
        return iter(self.optimizers)

    def __repr__(self) -> str:
        return f"CombinedOptimizer({', '.join(type(opt).__name__ for opt in self.optimizers)})"

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """Every optimizer's groups (the same dicts: setting a group's lr reaches its optimizer)."""
        return [group for opt in self.optimizers for group in opt.param_groups]

    @property
    def state(self) -> dict[torch.Tensor, dict[str, Any]]:
        return {param: slots for opt in self.optimizers for param, slots in opt.state.items()}

    def step(self, closure: Callable[[], float] | None = None) -> None:
        if closure is not None:
            raise ValueError("CombinedOptimizer.step takes no closure: it would run once per optimizer")
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """Positional (parameter indices per optimizer); checkpoints use the name-keyed form."""
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict["optimizers"]
        if len(saved) != len(self.optimizers):
            raise ValueError(f"state for {len(saved)} optimizers, but this one combines {len(self.optimizers)}")
        for opt, one in zip(self.optimizers, saved, strict=True):
            opt.load_state_dict(one)


Optimizer = torch.optim.Optimizer | CombinedOptimizer


class Muon(torch.optim.Muon):
    """`torch.optim.Muon` (same arguments, groups and `momentum_buffer` state), with its
    Newton-Schulz iteration in float32 off CUDA, and a group's same-shaped matrices (the same
    projection of every block) orthogonalised together, as one stack.

    Torch's always iterates in bfloat16; many CPUs emulate bfloat16 matmuls (see
    `glassgpt.runtime.choose_dtype`): on our 2-core test machine one Muon step of the demo
    model took 3.2 s in bfloat16, 0.17 s in float32 (one thread). On GPUs it stays bfloat16.
    Stacking does not change the arithmetic (each matrix keeps its own norm and iteration); it
    makes fewer, larger matmul calls (4 a step for any depth instead of 4 a layer): on 2 CPU
    threads Muon's step 1.04x (demo) and 1.11x (small) faster, whole steps 1.00-1.01x
    (`benchmarks/bench_muon.py`); on GPUs, where each call is a kernel launch, it saves more
    launches (not measured).
    """

    matmul_kernel = "aten"  # the Newton-Schulz products' kernel (`set_matmul_kernel`)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            same_shape: dict[Any, list[tuple[torch.Tensor, torch.Tensor]]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                # A sharded (DTensor) matrix is orthogonalised alone, as the distributed tensor it is.
                key = (p.shape, p.dtype, p.device) if type(p.data) is torch.Tensor else id(p)
                same_shape.setdefault(key, []).append((p, update))
            for pairs in same_shape.values():
                updates = [update for _, update in pairs]
                stacked = updates[0] if len(updates) == 1 else torch.stack(updates)
                ortho = orthogonalize(stacked, tuple(group["ns_coefficients"]), group["ns_steps"], group["eps"],
                                      self.matmul_kernel)
                for i, (p, _) in enumerate(pairs):
                    p.mul_(1 - lr * group["weight_decay"])  # decoupled, by the unscaled lr (as torch's)
                    one = ortho if len(pairs) == 1 else ortho[i]
                    p.add_(one.to(p.dtype), alpha=-lr * _muon_lr_scale(group["adjust_lr_fn"], p.shape))
        return loss


def orthogonalize(matrix: torch.Tensor, coefficients: tuple[float, float, float], steps: int,
                  eps: float, kernel: str = "aten") -> torch.Tensor:
    """About U V^T for matrix = U S V^T: Keller Jordan's quintic Newton-Schulz iteration (as
    torch's Muon), which maps singular values into roughly [0.7, 1.2] rather than exactly 1.
    `matrix` is one matrix (rows, cols) or a stack of them (n, rows, cols), each orthogonalised
    on its own. With kernel "onednn" (float32 on a CPU) the products run on oneDNN, one matrix at
    a time (its linear takes one weight, not a stack): Muon's step 1.18x (demo) and 1.47x (small)
    faster than the stack on PyTorch's kernel on this project's AVX-512 EPYC
    (`benchmarks/bench_muon.py`)."""
    a, b, c = coefficients
    on_onednn = kernel == "onednn" and not matrix.is_cuda
    if on_onednn and matrix.dim() == 3:
        return torch.stack([orthogonalize(one, coefficients, steps, eps, kernel) for one in matrix])
    multiply_add = torch.addmm if matrix.dim() == 2 else torch.baddbmm
    x = matrix.to(torch.bfloat16 if matrix.is_cuda else torch.float32)
    tall = matrix.size(-2) > matrix.size(-1)
    if tall:  # iterate on the wide orientation: the Gram matrix is the smaller one
        x = x.mT
    # Each matrix by its Frobenius norm (>= its spectral norm, so its singular values end <= 1).
    x = x / (x.norm() if x.dim() == 2 else x.norm(dim=(-2, -1), keepdim=True)).clamp(min=eps)
    for _ in range(steps):
        if on_onednn:
            gram = mm_nt(x, x, kernel)  # x @ x.T, symmetric: gram @ gram = gram @ gram.T
            x = a * x + mm_nt(b * gram + c * mm_nt(gram, gram, kernel), x.mT, kernel)
        else:
            gram = x @ x.mT
            x = multiply_add(x, multiply_add(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


def set_matmul_kernel(optimizer: Optimizer, kernel: str) -> None:
    """Run Muon's Newton-Schulz products (if the optimizer has Muon) on `kernel`, as the model's
    training matmuls (`glassgpt.matmul.choose_matmul_kernel`)."""
    for one in optimizer if isinstance(optimizer, CombinedOptimizer) else (optimizer,):
        if isinstance(one, Muon):
            one.matmul_kernel = kernel


def use_matmul_kernel(model: GPT, optimizer: Optimizer, setting: str, device: torch.device,
                      dtype: torch.dtype) -> MatmulChoice:
    """Choose training's float32 matmul kernel (`glassgpt.matmul.choose_matmul_kernel`) and set it
    on the model and on Muon, if any. Call it before compiling: the compiled graph keeps it."""
    choice = choose_matmul_kernel(setting, device, dtype)
    model.set_matmul_kernel(choice.kernel)
    set_matmul_kernel(optimizer, choice.kernel)
    return choice


def _muon_lr_scale(adjust_lr_fn: str | None, shape: torch.Size) -> float:
    """torch's `adjust_lr_fn`: "original" sqrt(max(1, rows/cols)), "match_rms_adamw" 0.2 sqrt(max)."""
    rows, cols = shape[0], shape[1]
    if adjust_lr_fn in (None, "original"):
        return math.sqrt(max(1.0, rows / cols))
    return 0.2 * math.sqrt(max(rows, cols))


def make_optimizer(model: nn.Module, train: TrainConfig) -> Optimizer:
    """The optimizer(s) `train.optimizer` names for `model` (plain, DDP-wrapped or sharded).

    Weight decay is never applied to norm gains (1-D). Every group records its peak learning
    rate as `group["peak_lr"]`, which the schedule scales (`lr_multiplier`).
    """
    named = [(name, p) for name, p in unwrap(model).named_parameters() if p.requires_grad]
    if train.optimizer == "adamw":
        return _adamw([p for _, p in named], train)
    hidden = [p for name, p in named if HIDDEN_MATRIX.fullmatch(name) and p.dim() == 2]
    hidden_ids = {id(p) for p in hidden}
    rest = [p for _, p in named if id(p) not in hidden_ids]
    # adjust_lr_fn="original" (Keller Jordan's): the step is scaled by sqrt(max(1, rows/cols)),
    # so its spectral norm follows the matrix's shape and one muon_lr (0.02, his default) suits
    # every preset's width; "match_rms_adamw" (0.2 * sqrt(max(rows, cols))) instead matches
    # AdamW's per-entry update size, which needs the lr re-tuned by width as AdamW's lr is.
    muon = Muon(
        [{"params": hidden, "peak_lr": train.muon_lr}], lr=train.muon_lr,
        weight_decay=train.muon_weight_decay, momentum=train.muon_momentum, nesterov=True,
        adjust_lr_fn="original")
    return CombinedOptimizer([_adamw(rest, train), muon])


def _adamw(params: list[nn.Parameter], train: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices and embeddings, not on norm gains. Fused where available."""
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": train.weight_decay,
               "peak_lr": train.lr},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, "peak_lr": train.lr}]
    try:
        return torch.optim.AdamW(groups, lr=train.lr, betas=(train.beta1, train.beta2), fused=True)
    except (RuntimeError, TypeError):  # older torch, or parameters (e.g. sharded) the fused kernel refuses
        return torch.optim.AdamW(groups, lr=train.lr, betas=(train.beta1, train.beta2))


def lr_multiplier(train: TrainConfig, step: int, progress: float) -> float:
    """The schedule as a fraction of each group's peak learning rate, at `step` and `progress`.

    Linear warmup over `warmup_steps`; then, as progress (by steps or training time, whichever
    is further) goes 0 -> 1, down to `min_lr_ratio`:
      "cosine"  a cosine from 1 over the whole run;
      "wsd"     1 until the last `decay_fraction` of progress, then a straight line down.
    """
    if step < train.warmup_steps:
        return (step + 1) / train.warmup_steps
    progress = min(1.0, progress)
    if train.schedule == "wsd":
        decay_start = 1.0 - train.decay_fraction
        if progress <= decay_start:
            return 1.0
        decayed = (progress - decay_start) / train.decay_fraction
        return 1.0 - (1.0 - train.min_lr_ratio) * decayed
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return train.min_lr_ratio + (1.0 - train.min_lr_ratio) * cosine


def learning_rate(train: TrainConfig, step: int, progress: float) -> float:
    """The scheduled learning rate of the AdamW groups (peak `train.lr`)."""
    return train.lr * lr_multiplier(train, step, progress)


def track_attention_logits(model: nn.Module, enabled: bool) -> None:
    """Make every attention layer keep its heads' largest logits in training forwards (or stop)."""
    if enabled and is_sharded(model):
        raise GlassError("QK-clip (--qk-clip) does not work with --fsdp yet (it scales rows of sharded "
                         "weights): train without --fsdp (DDP) or leave --qk-clip off")
    for module in unwrap(model).modules():
        if isinstance(module, Attention):
            module.track_max_logit, module.max_logit = enabled, None


@torch.no_grad()
def clip_attention_logits(model: nn.Module, limit: float, distributed: Distributed = SINGLE,
                          device: torch.device | None = None) -> float:
    """QK-clip, as in Kimi K2's MuonClip: bound the attention logits by scaling the weights.

    Left alone, a head's logits q.k / sqrt(Dh) can grow into the hundreds or thousands (Muon's
    updates are large and of full rank): the softmax becomes one-hot, its gradient vanishes, and
    the head can no longer learn where to look. After each optimizer step, every head whose
    largest logit in the step's forward (`max_attention_logits`) exceeded `limit` gets its
    logits scaled by gamma = limit / largest, half on each side: its query and key rows of the
    qkv weight (and bias) times sqrt(gamma). With grouped-query attention a key head serves
    several query heads: it takes sqrt of the smallest gamma of its group, and each query head
    the rest of its own. Heads under the limit are untouched; optimizer state is not changed.
    Call `track_attention_logits(model, True)` before training. Returns the largest logit of the
    step (before clipping), 0.0 if none was tracked.
    """
    largest = 0.0
    for attn in unwrap(model).modules():
        if not isinstance(attn, Attention) or attn.max_logit is None:
            continue
        logits = attn.max_logit
        if distributed.enabled:  # every process scales the same weights by the same factors
            logits = torch.tensor(all_reduce(logits.tolist(), "max", distributed, device or logits.device))
        logits = logits.to(attn.qkv.weight.device, torch.float32)
        attn.max_logit = None
        largest = max(largest, float(logits.max()))
        gamma = (limit / logits.clamp(min=1e-12)).clamp(max=1.0)  # (H,), 1 = within the limit
        if bool((gamma == 1).all()):
            continue
        group = attn.n_head // attn.n_kv_head
        key_scale = gamma.view(attn.n_kv_head, group).amin(dim=1).sqrt()  # (K,)
        query_scale = gamma / key_scale.repeat_interleave(group)  # (H,)
        rows = torch.cat([query_scale, key_scale, torch.ones(attn.n_kv_head, device=gamma.device)])
        rows = rows.repeat_interleave(attn.head_dim).to(attn.qkv.weight.dtype)  # one per qkv row
        attn.qkv.weight.mul_(rows[:, None])
        if attn.qkv.bias is not None:
            attn.qkv.bias.mul_(rows)
    return largest
