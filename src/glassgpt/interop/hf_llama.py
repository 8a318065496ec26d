"""Interoperability with Hugging Face `transformers`: our weights as a `LlamaForCausalLM`.

Our model fuses q/k/v into one projection and gate/up into another (faster on a CPU); Llama
keeps them apart. These functions split and rename, nothing else: the math is the same.
`transformers` is imported only inside `to_hf_model`, so it stays an optional dependency.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from glassgpt.config import ModelConfig
from glassgpt.errors import GlassError


def llama_config_dict(config: ModelConfig) -> dict[str, Any]:
    """The `transformers` LlamaConfig fields that describe the same network as `config`."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.mlp_hidden,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_kv_head,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.context_length,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    }


def to_hf_state_dict(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Rename/split our state dict into Llama's parameter names."""
    q_size = config.n_head * config.head_dim
    kv_size = config.n_kv_head * config.head_dim
    out = {"model.embed_tokens.weight": state["embed.weight"], "model.norm.weight": state["final_norm.weight"]}
    if not config.tie_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    for i in range(config.n_layer):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        q, k, v = state[ours + "attn.qkv.weight"].split([q_size, kv_size, kv_size], dim=0)
        gate, up = state[ours + "mlp.gate_up.weight"].split(config.mlp_hidden, dim=0)
        out.update({
            theirs + "input_layernorm.weight": state[ours + "attn_norm.weight"],
            theirs + "self_attn.q_proj.weight": q,
            theirs + "self_attn.k_proj.weight": k,
            theirs + "self_attn.v_proj.weight": v,
            theirs + "self_attn.o_proj.weight": state[ours + "attn.out.weight"],
            theirs + "post_attention_layernorm.weight": state[ours + "mlp_norm.weight"],
            theirs + "mlp.gate_proj.weight": gate,
            theirs + "mlp.up_proj.weight": up,
            theirs + "mlp.down_proj.weight": state[ours + "mlp.down.weight"],
        })
    return {name: t.contiguous() for name, t in out.items()}


def to_hf_model(model: torch.nn.Module) -> Any:
    """A `transformers.LlamaForCausalLM` holding a copy of `model`'s weights (float32)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    fields = llama_config_dict(model.config)
    fields.pop("architectures"), fields.pop("model_type"), fields.pop("torch_dtype")
    hf = LlamaForCausalLM(LlamaConfig(**fields))
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(model.state_dict(), model.config), strict=False)
    # With tied embeddings lm_head.weight is shared with embed_tokens, so it may be "missing".
    if unexpected or [m for m in missing if m != "lm_head.weight"]:
        raise RuntimeError(f"weight mismatch: missing {missing}, unexpected {unexpected}")
    if model.config.tie_embeddings:
        hf.tie_weights()
    return hf.eval()


def export_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write a run as a Hugging Face model folder: `LlamaForCausalLM.from_pretrained(out_dir)` loads it.

    The folder holds config.json, model.safetensors (Llama names), tokenizer.json and
    tokenizer_config.json. No `transformers` import is needed to write it.
    """
    from safetensors.torch import save_file

    from glassgpt.atomic import atomic_write, atomic_write_text
    from glassgpt.runs import load_run

    run = load_run(run_dir)
    out_dir = Path(out_dir)
    if out_dir.resolve() == Path(run_dir).resolve():
        raise GlassError("--out must be a new folder, not the run folder itself")
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = run.tokenizer
    config = llama_config_dict(run.config.model)
    config.update(bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id)
    weights = to_hf_state_dict(run.model.state_dict(), run.config.model)
    atomic_write(out_dir / "model.safetensors", lambda tmp: save_file(weights, tmp, metadata={"format": "pt"}))
    atomic_write_text(out_dir / "config.json", json.dumps(config, indent=2) + "\n")
    tokenizer.save(out_dir / "tokenizer.json")
    names = {i: name for name, i in tokenizer.special_ids.items()}
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": names.get(tokenizer.bos_id),
        "eos_token": names.get(tokenizer.eos_id),
        "pad_token": names.get(tokenizer.pad_id),
        "model_max_length": run.config.model.context_length,
        "add_bos_token": False,
    }
    atomic_write_text(out_dir / "tokenizer_config.json", json.dumps(tokenizer_config, indent=2) + "\n")
    return out_dir
