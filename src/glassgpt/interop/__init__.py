"""Interoperability with the Hugging Face ecosystem: `hf_llama` writes a run as a
`transformers` Llama folder (and builds the equal `LlamaForCausalLM` in memory)."""
