"""Interoperability with Hugging Face `transformers`' Llama: both ways.

Our model fuses q/k/v into one projection and gate/up into another (faster on a CPU); Llama
keeps them apart. `llama_links` is the one name map (`glassgpt.interop.weight_map`) that
export (`to_hf_state_dict`, `export_run`) and import (`glassgpt.interop.hf_import`) both use;
`llama_config_dict` and `model_config_from_llama` translate the config. Only the default
architecture (RMSNorm, RoPE, SwiGLU) is Llama: exporting a GPT-2-style model is refused.
`transformers` is imported only inside `to_hf_model`, so it stays an optional dependency.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from glassgpt.config import ModelConfig
from glassgpt.errors import GlassError
from glassgpt.interop.hf_files import HFConfig
from glassgpt.interop.weight_map import Link, to_theirs

ARCHITECTURE = "LlamaForCausalLM"
#: Tensors Llama checkpoints may hold that are not weights: old RoPE buffers.
IGNORED = re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")


def llama_links(config: ModelConfig) -> list[Link]:
    """Which Llama module each of our modules holds (the tied output layer is the embedding)."""
    q, kv = config.n_head * config.head_dim, config.n_kv_head * config.head_dim
    links = [Link("embed", ("model.embed_tokens",)), Link("final_norm", ("model.norm",))]
    if not config.tie_embeddings:
        links.append(Link("lm_head", ("lm_head",)))
    for i in range(config.n_layer):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        links += [
            Link(ours + "attn_norm", (theirs + "input_layernorm",)),
            Link(ours + "attn.qkv", tuple(theirs + f"self_attn.{n}_proj" for n in "qkv"), (q, kv, kv)),
            Link(ours + "attn.out", (theirs + "self_attn.o_proj",)),
            Link(ours + "mlp_norm", (theirs + "post_attention_layernorm",)),
            Link(ours + "mlp.gate_up", (theirs + "mlp.gate_proj", theirs + "mlp.up_proj"),
                 (config.mlp_hidden, config.mlp_hidden)),
            Link(ours + "mlp.down", (theirs + "mlp.down_proj",)),
        ]
    return links


def _require_llama(config: ModelConfig) -> None:
    if not config.is_llama:
        raise GlassError(f"this model is not Llama-shaped (norm {config.norm}, position {config.position}, "
                         f"mlp {config.mlp}): export-hf writes Llama folders only, for models trained with "
                         "glassgpt's default architecture")


def llama_config_dict(config: ModelConfig) -> dict[str, Any]:
    """The `transformers` LlamaConfig fields that describe the same network as `config`."""
    _require_llama(config)
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
        **({"rope_scaling": {"rope_type": "llama3", "factor": config.rope_scaling_factor,
                             "low_freq_factor": config.rope_low_freq_factor,
                             "high_freq_factor": config.rope_high_freq_factor,
                             "original_max_position_embeddings": config.rope_original_context}}
           if config.rope_scaling_factor != 1.0 else {}),
        "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": config.bias,
        "mlp_bias": config.bias,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    }


def model_config_from_llama(hf: HFConfig) -> ModelConfig:
    """Our `ModelConfig` for a Llama `config.json`; settings our model does not implement are refused."""
    d_model, n_head = hf.get("hidden_size", int), hf.get("num_attention_heads", int)
    rope = hf.get("rope_parameters", dict, None) or hf.get("rope_scaling", dict, None) or {}
    # transformers 5 keeps rope_theta inside rope_parameters, earlier versions beside it.
    theta = rope.get("rope_theta", hf.get("rope_theta", float, 10000.0))
    unsupported = []
    scaling = {}
    if (kind := rope.get("rope_type", rope.get("type", "default"))) == "llama3":
        try:
            scaling = dict(rope_scaling_factor=float(rope["factor"]), rope_low_freq_factor=float(rope["low_freq_factor"]),
                           rope_high_freq_factor=float(rope["high_freq_factor"]),
                           rope_original_context=int(rope["original_max_position_embeddings"]))
        except (KeyError, TypeError, ValueError) as err:
            raise GlassError(f"{hf.source} has llama3 RoPE scaling without a valid {err}: fix its config.json") from None
    elif kind != "default":
        unsupported.append(f"RoPE scaling {kind!r}")
    if (head_dim := hf.get("head_dim", int, d_model // n_head)) * n_head != d_model:
        unsupported.append(f"head_dim {head_dim} != hidden_size / num_attention_heads")
    if (act := hf.get("hidden_act", str, "silu")) != "silu":
        unsupported.append(f"hidden_act {act!r}")
    if (bias := hf.get("attention_bias", bool, False)) != hf.get("mlp_bias", bool, False):
        unsupported.append("biases in the attention or the MLP only")
    if unsupported:
        raise GlassError(f"{hf.source} describes a {ARCHITECTURE} with {', '.join(unsupported)}, which "
                         "glassgpt's model does not implement: import another model")
    return ModelConfig(
        vocab_size=hf.get("vocab_size", int),
        context_length=hf.get("max_position_embeddings", int),
        n_layer=hf.get("num_hidden_layers", int),
        n_head=n_head,
        n_kv_head=hf.get("num_key_value_heads", int, n_head),
        d_model=d_model,
        mlp_hidden=hf.get("intermediate_size", int),
        rope_theta=float(theta),
        **scaling,
        norm_eps=hf.get("rms_norm_eps", float, 1e-6),
        tie_embeddings=hf.get("tie_word_embeddings", bool, False),
        bias=bias,
    )


def to_hf_state_dict(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Rename/split our state dict into Llama's parameter names."""
    if config.tie_embeddings:
        state = {name: t for name, t in state.items() if name != "lm_head.weight"}  # it is embed.weight
    return to_theirs(llama_links(config), state)


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
