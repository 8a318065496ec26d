"""int8 decoding: quality within 1% bits per byte of float32, greedy agreement, CLI and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from glassgpt.cli import main
from glassgpt.data.corpus import builtin_documents
from glassgpt.errors import GlassError
from glassgpt.quantize import METHODS, Int8Linear, compare_with_float, quantize_for_decoding
from glassgpt.runs import load_run


def _held_out_text() -> str:
    """Text the tiny run never saw: it trained on the first 120 KB of each built-in work."""
    return "\n".join(doc.text[200_000:206_000] for doc in builtin_documents())


@pytest.mark.parametrize("method", METHODS)
def test_int8_keeps_bits_per_byte_within_one_percent(tiny_run: Path, method: str):
    run = load_run(tiny_run)
    quality = compare_with_float(run.model, run.tokenizer, _held_out_text(), method, max_tokens=2048,
                                 prompts=4, new_tokens=16)
    print(f"{method}: {quality.bpb_float:.4f} -> {quality.bpb_int8:.4f} bits per byte "
          f"({quality.bpb_change:+.3%}), greedy agreement {quality.greedy_agreement:.0%}"
          f" of {quality.greedy_tokens} tokens")
    assert abs(quality.bpb_change) < 0.01
    assert quality.greedy_tokens == 4 * 16
    assert quality.greedy_agreement >= 0.5
    assert quality.bpb_float < 6  # a trained model (random guessing over 512 tokens is ~9 bits per token)


@pytest.mark.parametrize("method", METHODS)
def test_int8_really_is_int8_and_close_to_float(tiny_run: Path, method: str):
    run = load_run(tiny_run)
    ids = torch.tensor([[run.tokenizer.bos_id, *run.tokenizer.encode("It is a truth universally acknowledged")]])
    with torch.no_grad():
        reference = run.model(ids).logits
        model = quantize_for_decoding(run.model, method)
        logits = model(ids).logits
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert not linears, "every linear layer is quantized"
    if method == "weight-only":
        assert model.lm_head.weight_int8.dtype == torch.int8
    error = (logits - reference).abs().max().item()
    assert 0 < error < 0.05 * reference.abs().max().item()


def test_weight_only_int8_linear_equals_its_dequantized_weights():
    torch.manual_seed(0)
    linear = torch.nn.Linear(40, 77)
    q = Int8Linear(linear)
    dequantized = q.weight_int8.float() * q.scale[:, None]
    assert (dequantized - linear.weight).abs().max() <= q.scale.max() / 2 + 1e-7  # rounding, nothing worse
    x = torch.randn(3, 5, 40)
    torch.testing.assert_close(q(x), x @ dequantized.T + linear.bias, atol=1e-5, rtol=0)


def test_generate_quantized_from_the_cli(tiny_run: Path, capsys):
    assert main(["generate", "--model", str(tiny_run), "--quantize", "int8", "-t", "0", "-n", "8", "The"]) == 0
    assert capsys.readouterr().out.startswith("The")
    with pytest.raises(GlassError, match="method must be one of"):
        quantize_for_decoding(load_run(tiny_run).model, "int4")
