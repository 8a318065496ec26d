"""`glassgpt import-hf`: folders `transformers` writes import with equal logits and greedy tokens."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from glassgpt.cli import main
from glassgpt.engine import Engine, SamplingConfig
from glassgpt.interop.hf_import import import_hf
from glassgpt.model import GPT
from glassgpt.runs import RunFolder, load_run
from glassgpt.tokenizer import Tokenizer

TEXT = "It is a truth universally acknowledged, that a single man in possession of a good fortune"


def _perturb(model: torch.nn.Module) -> None:
    """Random values in every tensor, so zero biases and unit norm gains cannot hide a wrong map."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))


@pytest.fixture(scope="module")
def gpt2_tokenizer_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """GPT-2's tokenizer files as transformers saves them: tokenizer.json (+ its config), and the
    vocab.json + merges.txt of the original release (written by `tokenizers` from the same BPE)."""
    from transformers import GPT2TokenizerFast

    folder = tmp_path_factory.mktemp("gpt2-tokenizer")
    Tokenizer.gpt2().save(folder / "source.json")
    hf = GPT2TokenizerFast(tokenizer_file=str(folder / "source.json"))
    hf.save_pretrained(folder)
    hf.backend_tokenizer.model.save(str(folder))
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")
    return {name: (folder / name).read_bytes() for name in names}


def _put(files: dict[str, bytes], folder: Path, fast: bool = True) -> None:
    """GPT-2's tokenizer into `folder`: tokenizer.json if `fast`, else only vocab.json + merges.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (("tokenizer.json", "tokenizer_config.json") if fast else ("vocab.json", "merges.txt")):
        (folder / name).write_bytes(files[name])


def _gpt2_folder(folder: Path, **changes) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50257, n_positions=64, n_embd=32, n_layer=2, n_head=4, **changes)
    model = GPT2LMHeadModel(config).eval()
    _perturb(model)
    return model


def _llama(**changes) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    fields = dict(vocab_size=50257, hidden_size=32, intermediate_size=80, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64, rope_theta=500.0,
                  tie_word_embeddings=True)
    model = LlamaForCausalLM(LlamaConfig(**(fields | changes))).eval()
    _perturb(model)
    return model


def _assert_same_model(run_dir: Path, hf_model: torch.nn.Module, hf_adds_bos: bool = False) -> None:
    """Equal logits (fp32, atol 1e-4), equal greedy continuations, equal tokenization (with
    `hf_adds_bos`, transformers' tokenizer puts bos in front itself, as Llama 2's does)."""
    from transformers import AutoTokenizer

    run = load_run(run_dir)
    hf_model.generation_config.eos_token_id = None  # the same 16 tokens on both sides, whatever they are
    ids = [run.tokenizer.bos_id, *run.tokenizer.encode(TEXT)]
    assert len(ids) > 16
    with torch.no_grad():
        torch.testing.assert_close(run.model(torch.tensor([ids])).logits, hf_model(torch.tensor([ids])).logits,
                                   atol=1e-4, rtol=0)
        theirs = hf_model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False,
                                   pad_token_id=0)[0, len(ids):].tolist()
    ours = Engine(run.model, run.tokenizer).generate_ids(
        ids, SamplingConfig(temperature=0, max_new_tokens=16, stop_at_eos=False)).samples[0].token_ids
    assert ours == theirs
    if (Path(run.config.parent) / "tokenizer.json").is_file():
        assert AutoTokenizer.from_pretrained(run.config.parent)(TEXT)["input_ids"] == (ids if hf_adds_bos else ids[1:])


def test_gpt2_imports_with_equal_logits_and_greedy_tokens(tmp_path: Path, gpt2_tokenizer_files, capsys):
    model = _gpt2_folder(tmp_path)
    model.save_pretrained(tmp_path / "gpt2", max_shard_size="500KB")  # sharded safetensors + index
    assert (tmp_path / "gpt2" / "model.safetensors.index.json").is_file()
    _put(gpt2_tokenizer_files, tmp_path / "gpt2")
    assert main(["import-hf", str(tmp_path / "gpt2"), "--out", str(tmp_path / "run")]) == 0
    assert "imported GPT2LMHeadModel" in capsys.readouterr().out
    config = RunFolder(tmp_path / "run").load_config()
    assert (config.stage, config.parent) == ("import", str((tmp_path / "gpt2").resolve()))
    assert (config.model.norm, config.model.position, config.model.mlp, config.model.bias) == (
        "layernorm", "learned", "gelu", True)
    assert config.tokenizer.kind == "gpt2"
    _assert_same_model(tmp_path / "run", model)


def test_original_gpt2_checkpoint_layout_imports(tmp_path: Path, gpt2_tokenizer_files):
    """GPT-2 as first released: pytorch_model.bin without the `transformer.` prefix, with the
    attention-mask buffers, and vocab.json + merges.txt instead of tokenizer.json."""
    model = _gpt2_folder(tmp_path)
    folder = tmp_path / "gpt2"
    model.config.save_pretrained(folder)
    state = {k.removeprefix("transformer."): v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    for i in range(model.config.n_layer):
        state[f"h.{i}.attn.bias"] = torch.ones(1, 1, 64, 64).tril()
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, folder / "pytorch_model.bin")
    _put(gpt2_tokenizer_files, folder, fast=False)
    import_hf(folder, tmp_path / "run")
    assert Tokenizer.load(tmp_path / "run").encode(TEXT) == Tokenizer.gpt2().encode(TEXT)
    _assert_same_model(tmp_path / "run", model)


@pytest.mark.parametrize("changes", [
    {},  # tied, multi-head
    {"num_key_value_heads": 2, "tie_word_embeddings": False},  # grouped-query attention, untied head
], ids=["tied-mha", "gqa-untied"])
def test_llama_imports_with_equal_logits_and_greedy_tokens(tmp_path: Path, gpt2_tokenizer_files, changes):
    model = _llama(**changes)
    model.save_pretrained(tmp_path / "llama")
    _put(gpt2_tokenizer_files, tmp_path / "llama")
    result = import_hf(tmp_path / "llama", tmp_path / "run")
    assert result.config.model.n_kv_head == model.config.num_key_value_heads
    assert result.config.model.tie_embeddings == model.config.tie_word_embeddings
    assert result.config.model.rope_theta == 500.0
    _assert_same_model(tmp_path / "run", model)


def test_sharded_pytorch_bin_imports(tmp_path: Path, gpt2_tokenizer_files):
    model = _llama(num_key_value_heads=2)
    folder = tmp_path / "llama"
    model.config.save_pretrained(folder)
    state = model.state_dict()
    names = sorted(state)
    halves = {"pytorch_model-00001-of-00002.bin": names[::2], "pytorch_model-00002-of-00002.bin": names[1::2]}
    for file, keys in halves.items():
        torch.save({k: state[k] for k in keys}, folder / file)
    index = {"weight_map": {k: file for file, keys in halves.items() for k in keys}}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    _put(gpt2_tokenizer_files, folder)
    import_hf(folder, tmp_path / "run")
    _assert_same_model(tmp_path / "run", model)


#: Llama 3's pre-tokenizer regex (its tokenizer.json splits with it, then maps bytes as GPT-2 does).
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _llama3_tokenizer(folder: Path) -> int:
    """A small tokenizer built the way Llama 3's is (its regex, byte-level BPE, then its specials
    <|begin_of_text|>, <|end_of_text|>, <|eot_id|> after the merges), saved as transformers saves
    it; returns its vocabulary size."""
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer
    from transformers import PreTrainedTokenizerFast

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([TEXT * 20, "Numbers 12345 and 'quotes' too.\n"], trainer)
    tok.add_special_tokens(["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>",
                            eos_token="<|end_of_text|>").save_pretrained(folder)
    return tok.get_vocab_size()


def test_llama3_with_its_tokenizer_and_rope_scaling_imports(tmp_path: Path):
    """Llama 3.1/3.2's shape: its tokenizer's special names and the "llama3" RoPE scaling (with
    these sizes some rotation frequencies are kept, some blended and some slowed 8x)."""
    folder = tmp_path / "llama3"
    vocab_size = _llama3_tokenizer(folder)
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}
    model = _llama(vocab_size=vocab_size, hidden_size=64, num_key_value_heads=2, rope_theta=10000.0,
                   max_position_embeddings=256, rope_scaling=scaling, tie_word_embeddings=False)
    model.save_pretrained(folder)
    import_hf(folder, tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert run.tokenizer.kind == "bpe" and not run.tokenizer.fast  # Llama 3's regex: the tokenizers path
    assert run.tokenizer.special_ids["<|begin_of_text|>"] == run.tokenizer.bos_id == vocab_size - 3
    assert run.tokenizer.eos_id == vocab_size - 2
    assert (run.config.model.rope_scaling_factor, run.config.model.rope_original_context) == (8.0, 64)
    _assert_same_model(tmp_path / "run", model)
    # The scaling matters here: the same weights without it give other logits.
    unscaled = GPT(dataclasses.replace(run.config.model, rope_scaling_factor=1.0)).eval()
    unscaled.load_state_dict(run.model.state_dict())
    ids = torch.tensor([[run.tokenizer.bos_id, *run.tokenizer.encode(TEXT)]])
    with torch.no_grad():
        assert not torch.allclose(unscaled(ids).logits, run.model(ids).logits, atol=1e-3)
    # Export writes the scaling back: transformers reads the same model from it.
    assert main(["export-hf", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 0
    from transformers import LlamaForCausalLM

    exported = LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        torch.testing.assert_close(exported(ids).logits, run.model(ids).logits, atol=1e-4, rtol=0)
    assert main(["import-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back")]) == 0
    assert load_run(tmp_path / "back").config.model == run.config.model


def _llama2_tokenizer(folder: Path) -> int:
    """A small tokenizer laid out as Llama 2's (and TinyLlama's, Mistral's) tokenizer.json is:
    SentencePiece-style BPE ("▁" for spaces, one in front of every text), <unk> <s> </s>, then the
    256 byte-fallback tokens <0x00>..<0xFF>, then the learned pieces; its post-processor puts <s>
    in front. Saved as transformers saves it; returns its vocabulary size."""
    from tokenizers import (
        AddedToken,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from tokenizers import Tokenizer as HFTokenizer
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    learner = HFTokenizer(models.BPE())
    learner.normalizer = normalizer
    learner.pre_tokenizer = pre_tokenizers.Metaspace()  # learning only: pieces never cross a "▁"
    learner.train_from_iterator([TEXT * 20, "Numbers 12345 and 'quotes' too.\n"],
                                trainers.BpeTrainer(vocab_size=120, show_progress=False))
    learned = json.loads(learner.to_str())["model"]
    specials = ["<unk>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(specials + [f"<0x{b:02X}>" for b in range(256)])}
    for token, _ in sorted(learned["vocab"].items(), key=lambda item: item[1]):
        vocab[token] = len(vocab)
    tok = HFTokenizer(models.BPE(vocab, [tuple(m) for m in learned["merges"]], unk_token="<unk>", fuse_unk=True,
                                 byte_fallback=True))
    tok.normalizer = normalizer
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(t, normalized=False) for t in specials])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder)
    return tok.get_vocab_size()


def test_llama2_with_its_sentencepiece_style_tokenizer_imports(tmp_path: Path):
    folder = tmp_path / "llama2"
    vocab_size = _llama2_tokenizer(folder)
    model = _llama(vocab_size=vocab_size, num_key_value_heads=2, tie_word_embeddings=False)
    model.save_pretrained(folder)
    import_hf(folder, tmp_path / "run")
    run = load_run(tmp_path / "run")
    tok = run.tokenizer
    assert (tok.bos_id, tok.eos_id) == (1, 2) and not tok.fast
    _assert_same_model(tmp_path / "run", model, hf_adds_bos=True)
    # Characters outside the vocabulary fall back to byte tokens; ids equal the tokenizers
    # library's, and the bytes come back whole (after the dummy prefix's space).
    text = "Naïve café owners say “hi” 😀\nand leave."
    ids = tok.encode(text)
    assert ids == tok.encode_hf(text)
    assert any(0x03 <= i < 0x03 + 256 for i in ids)  # byte-fallback tokens were used
    assert tok.decode(ids) == " " + text
    # A continuation's first token carries the space it stands for (streamed text reads right).
    word = tok.encode(" acknowledged")
    assert tok.token_bytes(word[0]).startswith(b" ")
    assert tok.decode(tok.encode(TEXT * 3)) == " " + TEXT * 3


def test_export_then_import_is_exact(tiny_run: Path, tmp_path: Path):
    assert main(["export-hf", "--model", str(tiny_run), "--out", str(tmp_path / "hf")]) == 0
    assert main(["import-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back")]) == 0
    original, back = load_run(tiny_run), load_run(tmp_path / "back")
    assert back.config.model == original.config.model
    assert back.tokenizer.to_json() == original.tokenizer.to_json()
    ours, theirs = original.model.state_dict(), back.model.state_dict()
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name


def _fails(capsys, *argv: str) -> str:
    """Run the CLI, expect a one-line error, return it."""
    capsys.readouterr()  # drop what came before (transformers' progress bars)
    assert main(list(argv)) == 1
    err = capsys.readouterr().err
    assert err.startswith("glassgpt: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


class NotATensor:
    """Pickled by reference: loading it would import and run this module's code."""


def test_bad_folders_get_one_line_errors_and_write_nothing(tmp_path: Path, gpt2_tokenizer_files, capsys):
    out = str(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    assert "has no config.json" in _fails(capsys, "import-hf", str(tmp_path / "empty"), "--out", out)
    assert "no such folder" in _fails(capsys, "import-hf", str(tmp_path / "nowhere"), "--out", out)

    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    err = _fails(capsys, "import-hf", str(bert), "--out", out)
    assert "BertForMaskedLM" in err and "GPT2LMHeadModel" in err and "LlamaForCausalLM" in err

    folder = tmp_path / "gpt2"
    model = _gpt2_folder(tmp_path)
    model.save_pretrained(folder)
    _put(gpt2_tokenizer_files, folder)
    weights = load_file(folder / "model.safetensors")

    missing = dict(weights)
    missing.pop("transformer.h.1.mlp.c_fc.bias")
    save_file(missing, folder / "model.safetensors")
    err = _fails(capsys, "import-hf", str(folder), "--out", out)
    assert "transformer.h.1.mlp.c_fc.bias" in err and "no tensor" in err

    save_file(weights | {"transformer.h.2.ln_1.weight": torch.ones(32)}, folder / "model.safetensors")
    assert "transformer.h.2.ln_1.weight" in _fails(capsys, "import-hf", str(folder), "--out", out)

    save_file(weights, folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"n_embd": 64}))
    err = _fails(capsys, "import-hf", str(folder), "--out", out)
    assert "transformer.wte.weight" in err and "shape (50257, 32)" in err

    (folder / "config.json").write_text(json.dumps(config | {"activation_function": "relu"}))
    assert "activation_function 'relu'" in _fails(capsys, "import-hf", str(folder), "--out", out)

    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").unlink()
    torch.save({"weights": weights, "extra": NotATensor()}, folder / "pytorch_model.bin")
    assert "needs more than tensors" in _fails(capsys, "import-hf", str(folder), "--out", out)

    (folder / "pytorch_model.bin").unlink()
    assert "has no weights" in _fails(capsys, "import-hf", str(folder), "--out", out)
    assert not (tmp_path / "run").exists()


def test_import_never_overwrites_a_run_and_export_refuses_gpt2(tmp_path: Path, gpt2_tokenizer_files, tiny_run: Path, capsys):
    folder = tmp_path / "gpt2"
    _gpt2_folder(tmp_path).save_pretrained(folder)
    _put(gpt2_tokenizer_files, folder)
    assert main(["import-hf", str(folder), "--out", str(tmp_path / "run")]) == 0
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    assert "already holds a run" in _fails(capsys, "import-hf", str(folder), "--out", str(tmp_path / "run"))
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before
    err = _fails(capsys, "export-hf", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "hf"))
    assert "not Llama" in err and "layernorm" in err
