"""GPT-2 (`transformers`' `GPT2LMHeadModel`) in glassgpt's model: its config and weight map.

GPT-2 is our model with its four switches set (`ModelConfig`: LayerNorm, learned positions, a
GELU MLP, biases). Its q, k and v already come fused as one `c_attn`, in our order; its linear
layers are `Conv1D`s, whose weights are stored transposed. The output layer is the token
embedding (tied), so only `transformer.wte` is read for both.
"""

from __future__ import annotations

import re

from glassgpt.config import ModelConfig
from glassgpt.errors import GlassError
from glassgpt.interop.hf_files import HFConfig
from glassgpt.interop.weight_map import Link

ARCHITECTURE = "GPT2LMHeadModel"
#: Tensors GPT-2 checkpoints may hold that are not weights: the causal-mask buffers older
#: versions saved.
IGNORED = re.compile(r"transformer\.h\.\d+\.attn\.(bias|masked_bias)")
# GPT-2's activation: GELU with the tanh approximation, under the names transformers uses for it.
TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")


def gpt2_links(config: ModelConfig) -> list[Link]:
    """Which GPT-2 module each of our modules holds (names with the `transformer.` prefix)."""
    links = [Link("embed", ("transformer.wte",)), Link("pos_embed", ("transformer.wpe",)),
             Link("final_norm", ("transformer.ln_f",))]
    for i in range(config.n_layer):
        ours, theirs = f"blocks.{i}.", f"transformer.h.{i}."
        links += [
            Link(ours + "attn_norm", (theirs + "ln_1",)),
            Link(ours + "attn.qkv", (theirs + "attn.c_attn",), transposed=True),
            Link(ours + "attn.out", (theirs + "attn.c_proj",), transposed=True),
            Link(ours + "mlp_norm", (theirs + "ln_2",)),
            Link(ours + "mlp.up", (theirs + "mlp.c_fc",), transposed=True),
            Link(ours + "mlp.down", (theirs + "mlp.c_proj",), transposed=True),
        ]
    return links


def with_prefix(state: dict) -> dict:
    """GPT-2's tensors named as `GPT2LMHeadModel` names them: the original checkpoints were saved
    from the inner `GPT2Model`, without the `transformer.` prefix."""
    if any(name.startswith("transformer.") for name in state):
        return state
    return {name if name == "lm_head.weight" else f"transformer.{name}": t for name, t in state.items()}


def model_config_from_gpt2(hf: HFConfig) -> ModelConfig:
    """Our `ModelConfig` for a GPT-2 `config.json`; settings our model does not implement are refused."""
    d_model = hf.get("n_embd", int)
    unsupported = []
    if (act := hf.get("activation_function", str, "gelu_new")) not in TANH_GELU:
        unsupported.append(f"activation_function {act!r}")
    if not hf.get("scale_attn_weights", bool, True):
        unsupported.append("unscaled attention (scale_attn_weights false)")
    if hf.get("scale_attn_by_inverse_layer_idx", bool, False):
        unsupported.append("scale_attn_by_inverse_layer_idx")
    if hf.get("add_cross_attention", bool, False):
        unsupported.append("cross-attention")
    if not hf.get("tie_word_embeddings", bool, True):
        unsupported.append("an untied output layer")
    if unsupported:
        raise GlassError(f"{hf.source} describes a {ARCHITECTURE} with {', '.join(unsupported)}, which "
                         "glassgpt's model does not implement: import another model")
    return ModelConfig(
        vocab_size=hf.get("vocab_size", int),
        context_length=hf.get("n_positions", int, hf.get("n_ctx", int, 1024)),
        n_layer=hf.get("n_layer", int),
        n_head=hf.get("n_head", int),
        d_model=d_model,
        mlp_hidden=hf.get("n_inner", int, 4 * d_model),
        norm_eps=hf.get("layer_norm_epsilon", float, 1e-5),
        tie_embeddings=True,
        norm="layernorm",
        position="learned",
        mlp="gelu",
        bias=True,
    )
