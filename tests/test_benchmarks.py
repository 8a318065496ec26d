"""The benchmark suite runs end to end (`--quick`) and its correctness checks pass."""

from __future__ import annotations

import dataclasses
import importlib
import json
import platform
import re
import sys
from pathlib import Path

import pytest
import torch

from glassgpt.cli import build_parser
from glassgpt.commands.train_cmd import build_config
from glassgpt.runs import RunFolder, shipped_model

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("transformers")


def benchmark_module(name: str):
    """benchmarks/NAME.py as a module (the folder is not installed with the package)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"benchmarks.{name}")


def load_benchmarks_main():
    return benchmark_module("run").main


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict]:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    status = load_benchmarks_main()(["--quick", "--json", str(out)])
    return status, json.loads(out.read_text(encoding="utf-8"))


def test_quick_run_passes_its_checks(quick_report):
    status, report = quick_report
    assert status == 0
    assert report["mode"] == "quick"
    assert report["checks_ok"] is True
    assert report["checks"]["greedy_identical"] is True
    assert report["checks"]["generate_token_counts"] is True
    assert report["checks"]["train_first_loss_equal"] is True
    assert report["checks"]["tokenizer_ids_identical"] is True


def test_quick_run_reports_positive_numbers(quick_report):
    _, report = quick_report
    machine = report["machine"]
    assert machine["fp32_gflops"] > 0 and machine["bf16_gflops"] > 0 and machine["bandwidth_gbs"] > 0

    for row in report["tokenizer"]:
        assert row["identical"] and row["megabytes"] > 0
        assert all(rate["median"] > 0 for rate in row["mb_per_s"].values())

    measured = [row for row in report["train"] if not row["skipped"]]
    assert {row["case"] for row in measured} == {"tiny", "demo"}
    for row in measured:
        assert row["ours_tokens_per_s"]["median"] > 0 and row["theirs_tokens_per_s"]["median"] > 0
        assert row["ours_gflops"] > 0 and row["ratio"] > 0
    for row in report["train"]:
        if row["skipped"]:  # only emulated bf16 may be skipped, and it says so
            assert row["setting"]["dtype"] == "bf16" and "emulated" in row["skipped"]

    measured = [row for row in report["generate"] if not row["skipped"]]
    assert {row["batch_size"] for row in measured} == {1, 8}
    for row in measured:
        assert row["ours_tokens_per_s"]["median"] > 0 and row["theirs_tokens_per_s"]["median"] > 0
        assert row["counts_ok"]
        if row["dtype"] == "fp32":
            assert row["identical"] is True
            assert row["distinct_tokens"] > row["new_tokens"] // 2  # not one token repeated


def test_only_selects_benchmarks(tmp_path):
    out = tmp_path / "tok.json"
    assert load_benchmarks_main()(["--quick", "--only", "tokenizer", "--json", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert "tokenizer" in report and "train" not in report and "generate" not in report


def test_a_greedy_mismatch_fails_the_run(tmp_path, monkeypatch, capsys):
    main = load_benchmarks_main()
    bench_generate = benchmark_module("bench_generate")
    real = bench_generate.theirs_generate

    def off_by_one_at_token_3(*args, **kwargs):
        rows = real(*args, **kwargs)
        return [row[:3] + [(row[3] + 1) % 100] + row[4:] if len(row) > 3 else row for row in rows]

    monkeypatch.setattr(bench_generate, "theirs_generate", off_by_one_at_token_3)
    out = tmp_path / "gen.json"
    assert main(["--quick", "--only", "generate", "--json", str(out)]) == 1
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["checks"]["greedy_identical"] is False
    assert "GREEDY MISMATCH" in capsys.readouterr().err


@pytest.mark.slow
def test_decode_benchmark_quick_run_passes_its_checks(tmp_path: Path):
    decode = benchmark_module("decode")
    assert decode.main(["--quick", "--json", str(tmp_path / "decode.json")]) == 0
    report = json.loads((tmp_path / "decode.json").read_text(encoding="utf-8"))
    assert report["checks_ok"] and report["read_bandwidth_gbs"] > 0
    implementations = {row["implementation"] for row in report["rows"]}
    assert implementations == {"glassgpt fp32", "glassgpt int8 avx2", "glassgpt int8 dynamic",
                               "glassgpt int8 weight-only", "transformers fp32"}
    assert {row["batch_size"] for row in report["rows"]} == {1, 8}
    assert all(row["tokens_per_s"]["median"] > 0 and row["bytes_per_step"] > 0 for row in report["rows"])
    fp32 = {row["case"]: row["bytes_per_step"] for row in report["rows"] if row["implementation"] == "glassgpt fp32"}
    for row in report["rows"]:
        if "int8" in row["implementation"]:  # a byte per weight instead of four
            assert row["bytes_per_step"] < 0.3 * fp32[row["case"]]


def test_copying_measure_tells_a_copying_model_from_one_that_cannot_copy(tiny_run: Path, capsys):
    from types import SimpleNamespace

    import torch

    copying = benchmark_module("copying")

    class Copier(torch.nn.Module):
        """Predicts, at every position, the token that followed the same token earlier (induction)."""

        def forward(self, x: torch.Tensor) -> SimpleNamespace:
            logits = torch.zeros(*x.shape, 100)
            for t in range(x.shape[1]):
                earlier = [s for s in range(t) if x[0, s] == x[0, t]]
                logits[0, t, x[0, earlier[-1] + 1] if earlier else 0] = 20.0
            return SimpleNamespace(logits=logits)

    class Uniform(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> SimpleNamespace:
            return SimpleNamespace(logits=torch.zeros(*x.shape, 100))

    ids = list(range(10, 40))
    first, second, top1 = copying.copy_scores(Copier(), 1, ids)
    # copies every token of the second copy but its first (nothing before predicts it)
    assert second > -1 and top1 == pytest.approx(29 / 30) and first < -10
    first, second, top1 = copying.copy_scores(Uniform(), 1, ids)
    assert first == pytest.approx(second) and top1 < 0.1
    assert copying.main([str(tiny_run)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + len(copying.TEXTS)
    assert copying.main(["--learn", "2", str(tiny_run)]) == 0
    assert "step    2" in capsys.readouterr().out


def test_learning_to_copy_from_scratch_gets_most_repeats_right():
    import torch

    from glassgpt.config import ModelConfig
    from glassgpt.model import GPT

    copying = benchmark_module("copying")
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=16, context_length=32, n_layer=2, n_head=2, d_model=32))
    found = copying.learn_to_copy(model, 16, steps=900, length=8, report=100)
    # Starts near chance (1/16) and ends copying most repeats. Passages of 4-8 tokens: a head that
    # looks a fixed distance back would get about a fifth of them; with 16 tokens a passage often
    # holds a token twice, which even an induction head cannot resolve, so not all.
    assert found[0][2] < 0.35 and found[-1][2] > 0.6


def test_long_generation_benchmark_rolls_at_one_position_per_token(tiny_run: Path, capsys):
    long_generation = benchmark_module("long_generation")
    context = 64  # the tiny preset's
    assert long_generation.sliding_starts(3 * context, context)[context - 1:context + 2] == [0, 17, 17]
    assert long_generation.main(["--model", str(tiny_run), "--quick", "--tokens", str(3 * context)]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| ") and not line.startswith("| way")}
    assert set(rows) == {"rolling cache", "sliding window", "fresh full window (reference)"}
    # Rolling: the prompt's prefill, then one position per token. Sliding re-reads 3/4 of the
    # context every context/4 tokens, so it runs ~3 positions per token once past the context.
    assert float(rows["rolling cache"][2]) < 1.2 < 2 < float(rows["sliding window"][2])
    assert all(float(cells[3]) > 0 for cells in rows.values())
    assert "check ok" in out


def test_shapes_benchmark_times_each_shape_at_its_default_mlp_width(capsys, monkeypatch):
    from glassgpt.matmul import onednn_available

    bench_shapes = benchmark_module("bench_shapes")
    shapes = bench_shapes.shapes(quick=False)
    assert all(c.num_parameters() < 14e6 for c in shapes.values())  # all about the small preset's size
    narrow = shapes["6 x 320, 5 heads (small until December 2026)"]
    assert (narrow.d_model, narrow.mlp_hidden) == (320, 896)  # 8/3 x 320, not the preset's 1,024
    kernel = "onednn" if onednn_available() else "aten"
    kernels = []  # the kernel each shape's steps train on
    real_runner = bench_shapes.step_runner
    monkeypatch.setattr(bench_shapes, "step_runner",
                        lambda *args, kernel, **more: kernels.append(kernel) or real_runner(*args, kernel=kernel, **more))
    assert bench_shapes.main(["--quick", "--matmul", kernel]) == 0
    assert kernels == [kernel, kernel]
    table = capsys.readouterr().out
    assert f"fp32 matmuls on {kernel}" in table
    rows = [line for line in table.splitlines() if line.startswith("| base") or line.startswith("| wider")]
    assert len(rows) == 2 and all("%" in row for row in rows)


def test_attention_benchmark_checks_each_variant_against_sdpa(capsys):
    bench_attention = benchmark_module("bench_attention")
    # The blocked version is causal attention itself, not an approximation: equal to SDPA.
    q, k, v = torch.randn(3, 2, 4, 32, 16).unbind(0)
    for blocks in (1, 2, 4):
        torch.testing.assert_close(bench_attention.blocked(blocks, 32)(q, k, v), bench_attention.sdpa(q, k, v),
                                   atol=1e-5, rtol=1e-5)
    # The hand-written backward, as an autograd function and as one custom operator, and on oneDNN,
    # gives autograd's gradients through SDPA.
    grad_out = torch.randn(2, 4, 32, 16)
    expected = [x.clone().requires_grad_() for x in (q, k, v)]
    bench_attention.sdpa(*expected).backward(grad_out)
    onednn = [bench_attention.onednn] if bench_attention.onednn_available() else []
    for attend in (bench_attention.hand_written(4), bench_attention.hand_written_op(4), *onednn):
        leaves = [x.clone().requires_grad_() for x in (q, k, v)]
        torch.testing.assert_close(attend(*leaves), bench_attention.sdpa(q, k, v), atol=1e-5, rtol=1e-5)
        attend(*leaves).backward(grad_out)
        for ours, theirs in zip(leaves, expected, strict=True):
            torch.testing.assert_close(ours.grad, theirs.grad, atol=1e-5, rtol=1e-5)
    assert bench_attention.main(["--quick", "--step"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert {"sdpa", "masked matmuls", "blocked matmuls, 4 blocks", "hand-written backward, 4 blocks",
            "hand-written backward, 4 blocks, one operator", "q @ k^T alone (bmm)", "tiny step, sdpa",
            "tiny step, hand-written backward, 4 blocks", "tiny step, hand-written backward, 4 blocks, one operator"
            } <= set(rows)
    if onednn:
        assert {bench_attention.ONEDNN, f"tiny step, {bench_attention.ONEDNN}"} <= set(rows)
    assert "1.00x" in rows["sdpa"]


@pytest.mark.parametrize("kernel", ["aten", "onednn"])
def test_peak_benchmark_counts_each_weight_matmul_of_a_step_once(capsys, kernel: str):
    from glassgpt.matmul import onednn_available

    if kernel == "onednn" and not onednn_available():
        pytest.skip("this PyTorch has no oneDNN linear")
    bench_peak = benchmark_module("bench_peak")
    assert bench_peak.matmul_flop_count("aten::mm", [[8, 5], [5, 3]]) == 2 * 8 * 5 * 3
    assert bench_peak.matmul_flop_count("aten::addmm_", [[8, 3], [8, 5], [5, 3]]) == 2 * 8 * 5 * 3
    assert bench_peak.matmul_flop_count("mkldnn::_linear_pointwise", [[8, 5], [3, 5], [], [], [], []]) == 2 * 8 * 5 * 3
    # The run fails unless the profiled weight matmuls (mm calls, or oneDNN's) add up to the
    # model's weight FLOPs.
    assert bench_peak.main(["--quick", "--matmul", kernel]) == 0
    out = capsys.readouterr().out
    assert f"fp32 matmuls on {kernel}" in out
    rows = {line.split("|")[1].strip(): line.split("|")[2:4] for line in out.splitlines() if line.startswith("| ")}
    for label in (f"256^3 matmul, best call ({kernel})", "256^3 matmul, median call",
                  "256^3 matmul, sustained (all calls)"):
        rate, mfu = rows[label]
        assert float(rate.replace(",", "")) > 0 and mfu.strip().endswith("%")
    assert float(rows["tiny's own weight matmuls in a step (profiler)"][0].replace(",", "")) > 0
    assert "profiled steps:" in out
    assert "MFU against the best call: now " in out
    bounds = bench_peak.mfu_bounds(0.7, matmul_share=0.7, attention_share=0.125)
    assert bounds == pytest.approx({"now": 0.7, "attention free": 0.8, "only the weight matmuls": 1.0})
    fma_line = next(line for line in out.splitlines() if line.startswith("the cores' FMA peak"))
    fma = bench_peak.fma_kernel()
    if isinstance(fma, str):  # no compiler here: the run says why, and measures nothing
        assert fma_line == f"the cores' FMA peak: not measured: {fma}"
        return
    assert re.search(r"\d threads, best ~20 ms call\): [\d,]+ GFLOP/s; the best matmul call is \d+% of it", fma_line)


def test_fma_loop_does_all_its_work_and_the_check_catches_a_loop_that_did_not():
    bench_peak = benchmark_module("bench_peak")
    fma = bench_peak.fma_kernel()
    if isinstance(fma, str):
        pytest.skip(fma)
    lanes = fma.flops_per_iteration() // 2 // 12  # 12 accumulators, 2 FLOPs an FMA
    assert lanes in (8, 16)  # AVX2 or AVX-512
    # a = a * 0.5 + 1 from 0: 2.0 exactly after enough rounds, 2 - 2^(1-n) after n.
    assert fma.fma_loop(100, 2, 0.5, 1.0) == 2.0 * 12 * lanes * 2
    assert fma.fma_loop(3, 1, 0.5, 1.0) == 1.75 * 12 * lanes
    assert bench_peak.fma_flops(fma, 0.05) > 0

    class Lazy:  # a loop that skipped its rounds
        flops_per_iteration = fma.flops_per_iteration

        @staticmethod
        def fma_loop(rounds, threads, multiplier, addend):
            return fma.fma_loop(1, threads, multiplier, addend)

    with pytest.raises(SystemExit, match="the FMA loop left"):
        bench_peak.fma_flops(Lazy, 0.05)


def test_rl_addition_chains_blank_model_addition_sft_and_rl(tmp_path: Path, capsys):
    rl_addition = benchmark_module("rl_addition")
    out = tmp_path / "exp"
    assert rl_addition.main(["--out", str(out), "--tiny", "--conversations", "50", "--sft-steps", "2",
                             "--rl-steps", "2", "--eval-every", "2", "--heldout-problems", "2"]) == 0
    chats = [json.loads(line)["messages"] for line in (out / "add.jsonl").read_text().splitlines()]
    assert len(chats) == 50
    for user, assistant in chats:  # addition only, answered right, in either style
        a, b = map(int, re.findall(r"\d+", user["content"]))
        assert assistant["content"].splitlines()[-1] == f"Answer: {a + b}"
    sft_config = json.loads((out / "sft" / "config.json").read_text())
    rl_config = json.loads((out / "rl" / "config.json").read_text())
    assert (sft_config["parent"], rl_config["parent"]) == (str(out / "blank"), str(out / "sft"))
    assert rl_config["rl"]["tasks"] == ["addition"]
    assert [step for step, _, _ in rl_addition.heldout_curve(out / "rl")] == [0, 2]
    assert "step    2:" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="exists"):  # never writes into an earlier experiment
        rl_addition.main(["--out", str(out), "--tiny"])


def test_rl_addition_blank_model_has_the_shipped_shape():
    rl_addition = benchmark_module("rl_addition")
    args = build_parser().parse_args(["train", *rl_addition.shipped_shape(), "--out", "unused"])
    assert build_config(args).model == RunFolder(shipped_model()).load_config().model


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_bench_allocator_compares_both_mallocs(capsys):
    bench_allocator = benchmark_module("bench_allocator")
    assert bench_allocator.main(["--quick", "--matmul", "aten"]) == 0
    out = capsys.readouterr().out
    assert "fp32 matmuls on aten" in out
    rows = [line for line in out.splitlines() if line.startswith("| tiny")]
    assert [row.split("|")[2].strip() for row in rows] == ["default malloc", "keep freed memory"]


def test_bench_mkl_compares_mkl_held_back_and_let_choose(capsys):
    from glassgpt.mkl_on_amd import AMD_VENDOR, c_compiler, cpu_vendor

    bench_mkl = benchmark_module("bench_mkl")
    assert bench_mkl.main(["--quick"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1:3] for line in out.splitlines() if line.startswith("| tiny")]
    assert [worker.strip() for _, worker in rows] == ["MKL held back", "MKL let choose"]
    assert "MKL held back: held back" in out
    if cpu_vendor() == AMD_VENDOR and c_compiler() is not None:  # the worker loaded MKL's answer before torch
        assert "MKL let choose: loaded" in out and "MKL runs its generic code" in out  # (the held-back one)


def _transparent_huge_pages_off() -> bool:
    try:
        return "[never]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux") or _transparent_huge_pages_off(),
                    reason="glibc's malloc and transparent huge pages")
def test_bench_allocator_adds_huge_pages_on_request(capsys):
    bench_allocator = benchmark_module("bench_allocator")
    assert bench_allocator.main(["--quick", "--huge-pages"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny")]
    assert [row.split("|")[2].strip() for row in rows] == ["default malloc", "keep freed memory", "keep + huge pages"]


def test_demo_tuning_candidates_are_valid_runs_and_the_winner_is_the_demo_preset():
    from glassgpt.config import preset

    tune_demo = benchmark_module("tune_demo")
    configs = {name: tune_demo.candidate_config(changes, 4.0, seed=0) for name, changes in tune_demo.CANDIDATES.items()}
    demo, control = preset("demo"), configs["slow 1, d96, batch 64"]
    # The control differs from the demo preset only in what every candidate's run sets.
    run_settings = {f: getattr(demo.train, f) for f in ("dtype", "time_budget_min", "seed", "save_every")}
    assert (control.model, control.tokenizer) == (demo.model, demo.tokenizer)
    assert dataclasses.replace(control.train, **run_settings) == demo.train
    zero, demo_3 = configs["demo 3, zero init"], configs["demo 3 (demo 2, adamw 3e-2)"]
    assert zero.train.residual_init == "zero" and dataclasses.replace(zero.train, residual_init="scaled") == demo_3.train
    assert dataclasses.replace(demo_3.train, batch_size=64, warmup_steps=10) == control.train
    # Rows keep their meaning as the preset moves on: a candidate that does not name a field has
    # the first round's value (demo 3 ran at batch 32 and d_model 192 with 4 heads, the old demo
    # with 4,096 tokens and AdamW).
    assert demo_3.train.batch_size == 32 and control.train.batch_size == 64
    assert (demo_3.model.d_model, demo_3.model.n_head, demo_3.model.mlp_hidden) == (192, 4, 512)
    assert dataclasses.replace(demo_3.model, d_model=96, n_head=3, n_kv_head=3, mlp_hidden=256) == control.model
    old = configs["adamw cosine lr 3e-3 (old demo)"]
    assert (old.tokenizer.vocab_size, old.model.vocab_size, old.train.optimizer, old.train.batch_size) == (
        4096, 4096, "adamw", 32)
    # A token budget: steps for that many tokens at the candidate's batch, and no time limit.
    by_tokens = tune_demo.candidate_config(tune_demo.CANDIDATES["demo 3 (demo 2, adamw 3e-2)"], 4.0, seed=0,
                                           tokens=901120)
    assert (by_tokens.train.max_steps, by_tokens.train.time_budget_min) == (901120 // (32 * 128), 0.0)
    # A FLOP budget: a model with fewer FLOPs a token trains more tokens (here the 4,096-token
    # vocabulary's smaller output layer), a model of the budget's shape exactly the tokens it names.
    flops = 901120 * demo_3.model.flops_per_token()
    same, smaller = (tune_demo.candidate_config(tune_demo.CANDIDATES[name], 4.0, seed=0, flops=flops)
                     for name in ("demo 3, warmup 10", "slow 1, vocab 4096"))
    assert (same.train.max_steps, same.train.time_budget_min) == (901120 // (32 * 128), 0.0)
    assert smaller.train.max_steps * 32 * 128 == pytest.approx(flops / smaller.model.flops_per_token(), abs=32 * 128)
    assert smaller.train.max_steps > same.train.max_steps


def test_muon_benchmark_checks_that_stacked_and_alone_step_alike(capsys, monkeypatch):
    bench_muon = benchmark_module("bench_muon")
    assert bench_muon.main(["--quick", "--step"]) == 0
    rows = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    assert {f"tiny, {kind}, {variant}" for kind in ("Muon's step", "training step") for variant in bench_muon.VARIANTS
            } <= set(rows)
    assert "1.00x" in rows["tiny, training step, alone"]
    # The equality check can fail: an "alone" optimizer at another learning rate ends elsewhere.
    real = bench_muon.optimizer_for

    def other_lr(model, config, variant):
        optimizer = real(model, config, variant)
        if variant == "alone":
            for group in optimizer.optimizers[1].param_groups:
                group["lr"] *= 2
        return optimizer

    monkeypatch.setattr(bench_muon, "optimizer_for", other_lr)
    with pytest.raises(AssertionError):
        bench_muon.check_equal_steps(bench_muon.run_config("demo", quick=True))


def test_matmul_benchmark_times_every_product_of_a_step_with_both_kernels(capsys):
    bench_matmul = benchmark_module("bench_matmul")
    if not bench_matmul.onednn_available():
        pytest.skip("this PyTorch has no oneDNN linear")
    assert bench_matmul.main(["--quick", "--step"]) == 0
    rows = {line.split("|")[1].strip(): line.split("|")[2:] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ")}
    for product in ("qkv", "attention out", "mlp up", "mlp down", "logits (a loss chunk)"):
        for kind in ("forward", "input grad", "weight grad"):
            shape, aten, onednn, _ = rows[f"tiny, {product}, {kind}"][:4]
            assert float(aten.replace(",", "")) > 0 and float(onednn.replace(",", "")) > 0
    assert rows["tiny, mlp down, forward"][0].strip() == "128 x 192 x 64"  # 4 x 32 tokens, SwiGLU 192 wide
    assert "tiny, eager training step" in rows


def test_bench_subnormals_compares_kept_and_flushed_and_checks_a_real_model(capsys):
    bench_subnormals = benchmark_module("bench_subnormals")
    assert bench_subnormals.main(["--quick"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1:3] for line in out.splitlines() if line.startswith("| p @ W") or line.startswith("| softmax")]
    assert [worker.strip() for _, worker in rows] == ["subnormals kept", "flushed to zero"] * 2
    kept, flushed = re.search(r"([\d.]+)% of p subnormal where kept, ([\d.]+)% where flushed", out).groups()
    assert float(kept) > 1.0  # the synthetic logits do make them
    if platform.machine() in ("x86_64", "AMD64"):  # where the CPU can flush (FTZ/DAZ), none are left
        assert float(flushed) == 0.0
    shipped = next(line for line in out.splitlines() if line.startswith("| the shipped base"))
    assert shipped.split("|")[4].strip() == "0.00%"  # a trained model's loss makes none
