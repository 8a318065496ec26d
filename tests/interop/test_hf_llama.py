from pathlib import Path

import torch

from glassgpt.cli import main
from glassgpt.runs import load_run


def test_exported_folder_loads_in_transformers_with_equal_logits_and_ids(tiny_run: Path, tmp_path: Path):
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    assert main(["export-hf", "--model", str(tiny_run), "--out", str(tmp_path / "hf")]) == 0
    hf_model = LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    hf_tokenizer = PreTrainedTokenizerFast.from_pretrained(tmp_path / "hf")
    run = load_run(tiny_run)
    text = "It is a truth universally acknowledged, that a single man"
    ids = run.tokenizer.encode(text)
    assert hf_tokenizer(text)["input_ids"] == ids
    x = torch.tensor([[run.tokenizer.bos_id, *ids]])
    with torch.no_grad():
        torch.testing.assert_close(hf_model(x).logits, run.model(x).logits, atol=1e-4, rtol=0)
