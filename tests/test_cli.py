"""The command line: each subcommand's happy path, and every bad input as one clean line."""

import json
import shutil
from pathlib import Path

import pytest

from cli_run import assert_one_line_error, run_cli
from glassgpt.cli import main
from glassgpt.errors import GlassError


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture):
    for command in ("demo", "train", "generate", "eval", "corpus"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert "usage: glassgpt " + command in capsys.readouterr().out


def test_only_training_commands_make_malloc_keep_freed_memory(monkeypatch: pytest.MonkeyPatch):
    from glassgpt import cli
    from glassgpt.commands import look_cmd, train_cmd

    kept = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: kept.append(True) or True)
    monkeypatch.setattr(train_cmd, "run", lambda args: 0)
    monkeypatch.setattr(look_cmd, "run_next", lambda args: 0)
    assert main(["train", "--preset", "tiny"]) == 0
    assert kept == [True]
    assert main(["look", "next", "The"]) == 0
    assert kept == [True]
    subcommands = cli.build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    assert cli.TRAINING_COMMANDS <= set(subcommands)


def test_generate_streams_and_greedy_is_deterministic(tiny_run: Path, capsys: pytest.CaptureFixture):
    args = ("generate", "--model", str(tiny_run), "In the beginning", "-t", "0", "-n", "12")
    code, first, _ = run_cli(capsys, *args)
    assert code == 0 and first.startswith("In the beginning")
    assert run_cli(capsys, *args)[1] == first
    code, out, _ = run_cli(capsys, "generate", "--model", str(tiny_run), "Call me", "--samples", "2",
                           "--seed", "1", "-n", "8", "--top-k", "20", "--top-p", "0.9")
    assert code == 0 and out.count("--- sample") == 2


def test_long_prompt_is_cropped_with_a_notice(tiny_run: Path, capsys: pytest.CaptureFixture):
    code, _, err = run_cli(capsys, "generate", "--model", str(tiny_run), "word " * 500, "-n", "3")
    assert code == 0 and "kept its last" in err


def test_eval_prints_bits_per_byte(tiny_run: Path, small_text_dir: Path, capsys: pytest.CaptureFixture):
    code, out, _ = run_cli(capsys, "eval", "--model", str(tiny_run), "--data", str(small_text_dir / "kjv.txt"),
                           "--max-tokens", "4000")
    assert code == 0
    bpb = float(out.split()[0])
    assert 0.5 < bpb < 8


@pytest.mark.parametrize("options, fragment", [
    (["-t", "-1"], "temperature must be >= 0"),
    (["--top-p", "0"], "top-p must be in (0, 1]"),
    (["--top-p", "1.01"], "top-p must be in (0, 1]"),
    (["--top-k", "-3"], "top-k must be >= 0"),
    (["-n", "0"], "max new tokens must be >= 1"),
])
def test_bad_sampling_options(tiny_run: Path, capsys: pytest.CaptureFixture, options: list[str], fragment: str):
    code, _, err = run_cli(capsys, "generate", "--model", str(tiny_run), "hello", *options)
    assert_one_line_error(code, err, fragment)


def test_bad_model_folders(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    code, _, err = run_cli(capsys, "generate", "--model", str(tmp_path / "nope"), "hi")
    assert_one_line_error(code, err, "no such run folder")
    code, _, err = run_cli(capsys, "generate", "--model", str(tmp_path), "hi")
    assert_one_line_error(code, err, "not a glassgpt run folder")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    code, _, err = run_cli(capsys, "eval", "--model", str(broken), "--data", str(tiny_run / "config.json"))
    assert_one_line_error(code, err, "corrupted")
    config = json.loads((tiny_run / "config.json").read_text())
    config["model"]["n_layer"] = 3
    shutil.copy(tiny_run / "model.safetensors", broken / "model.safetensors")
    (broken / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "generate", "--model", str(broken), "hi")
    assert_one_line_error(code, err, "does not match")


@pytest.mark.parametrize("content, fragment", [
    (b"", "is empty"), (b"\x89PNG\r\n\x1a\n\x00\x00\x00" * 50, "looks binary"),
    (b"na\xefve caf\xe9 " * 50, "is not UTF-8"),
])
def test_bad_training_data(tmp_path: Path, capsys: pytest.CaptureFixture, content: bytes, fragment: str):
    data = tmp_path / "data.txt"
    data.write_bytes(content)
    code, _, err = run_cli(capsys, "train", "--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "r"))
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "r" / "model.safetensors").exists()


@pytest.mark.parametrize("options, fragment", [
    (["--data", "/no/such/dir"], "no such file or folder"),
    (["--time-budget", "0"], "--time-budget: must be > 0"),
    (["--time-budget", "-2"], "--time-budget: must be > 0"),
    (["--max-steps", "0"], "--max-steps: must be >= 1"),
    (["--preset", "huge"], "invalid choice"),
    (["--heads", "5"], "divisible by n_head"),
    (["--muon-weight-decay", "-0.1"], "weight decay must be >= 0"),
])
def test_bad_training_options(tmp_path: Path, capsys: pytest.CaptureFixture, options: list[str], fragment: str):
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), *options)
    assert_one_line_error(code, err, fragment)


def test_resume_needs_an_existing_run(tmp_path: Path, capsys: pytest.CaptureFixture):
    code, _, err = run_cli(capsys, "train", "--resume")
    assert_one_line_error(code, err, "--resume needs --out")
    code, _, err = run_cli(capsys, "train", "--resume", "--out", str(tmp_path / "none"))
    assert_one_line_error(code, err, "no such run folder")


def test_pretraining_only_options_are_not_offered_to_fine_tuning(capsys: pytest.CaptureFixture):
    for command, offered in (("train", True), ("sft", False), ("rl", False)):
        _, out, _ = run_cli(capsys, command, "--help")
        assert ("--repeat-fraction" in out) == offered, command


def test_bad_init_from_is_a_one_line_error(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    before = (tiny_run / "model.safetensors").read_bytes()
    for options, fragment in [(["--init-from", str(tmp_path / "none")], "no such run folder"),
                              (["--init-from", str(tiny_run), "--layers", "3"], "keeps RUN's model"),
                              (["--init-from", str(tiny_run), "--resume"], "give one of them"),
                              (["--init-from", str(tiny_run), "--residual-init", "zero"], "how a new model starts")]:
        code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), *options)
        assert_one_line_error(code, err, fragment)
    code, _, err = run_cli(capsys, "train", "--init-from", str(tiny_run), "--out", str(tiny_run))
    assert_one_line_error(code, err, "is the model you start from")
    assert (tiny_run / "model.safetensors").read_bytes() == before and not (tmp_path / "r").exists()


def test_matmul_onednn_with_bf16_is_refused_before_anything_is_written(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture):
    code, _, err = run_cli(capsys, "train", "--preset", "tiny", "--matmul", "onednn", "--dtype", "bf16",
                           "--device", "cpu", "--out", str(tmp_path / "r"))
    assert_one_line_error(code, err, "--matmul onednn is for float32 training on CPUs")
    assert not (tmp_path / "r").exists()


def test_no_stage_writes_into_the_model_it_starts_from(tiny_run: Path, tiny_chat_run: Path,
                                                       capsys: pytest.CaptureFixture):
    for command, parent in (("sft", tiny_run), ("rl", tiny_chat_run)):
        before = (parent / "model.safetensors").read_bytes()
        code, _, err = run_cli(capsys, command, "--model", str(parent), "--out", str(parent))
        assert_one_line_error(code, err, "is the model you start from")
        assert (parent / "model.safetensors").read_bytes() == before


def test_training_refuses_to_overwrite(tiny_run: Path, capsys: pytest.CaptureFixture):
    before = (tiny_run / "model.safetensors").read_bytes()
    code, _, err = run_cli(capsys, "train", "--preset", "tiny", "--out", str(tiny_run))
    assert_one_line_error(code, err, "--resume")
    assert (tiny_run / "model.safetensors").read_bytes() == before


def test_unusable_output_paths_are_one_line_errors(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    code, _, err = run_cli(capsys, "export-hf", "--model", str(tiny_run), "--out", str(a_file))
    assert_one_line_error(code, err, "File exists")
    code, _, err = run_cli(capsys, "export-hf", "--model", str(tiny_run), "--out", str(a_file / "sub"))
    assert_one_line_error(code, err, str(a_file))


def test_train_options_set_the_model_shape():
    from glassgpt.cli import build_parser
    from glassgpt.commands.train_cmd import build_config

    def config(*options: str):
        return build_config(build_parser().parse_args(["train", "--preset", "small", *options])).model

    assert config("--d-model", "256", "--heads", "4").mlp_hidden == 704  # the default width for the new d_model
    assert config("--d-model", "256", "--heads", "4", "--mlp-hidden", "896").mlp_hidden == 896
    assert (config("--layers", "6", "--heads", "5", "--d-model", "320").n_kv_head, config().mlp_hidden) == (5, 1024)


def test_train_options_set_the_weight_decays():
    from glassgpt.cli import build_parser
    from glassgpt.commands.train_cmd import build_config

    def train(*options: str):
        return build_config(build_parser().parse_args(["train", "--preset", "small", *options])).train

    default = train()
    changed = train("--muon-weight-decay", "0.1", "--weight-decay", "0.05")
    assert (changed.muon_weight_decay, changed.weight_decay) == (0.1, 0.05)
    assert (default.muon_weight_decay, default.weight_decay) != (0.1, 0.05)
    assert (default.residual_init, train("--residual-init", "zero").residual_init) == ("scaled", "zero")
    assert (default.matmul, train("--matmul", "aten").matmul, train("--matmul", "onednn").matmul) == \
        ("auto", "aten", "onednn")


@pytest.mark.parametrize("command", ["sft", "pipeline"])
def test_chat_stages_start_from_the_shipped_base_even_beside_a_demo_run(tiny_run: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch, command: str):
    import glassgpt.assets
    from glassgpt.cli import build_parser
    from glassgpt.commands.common import base_model_path, model_path
    from glassgpt.runs import SHIPPED_MODEL

    monkeypatch.chdir(tmp_path)
    package = tmp_path / "package"
    shutil.copytree(tiny_run, tmp_path / "runs" / "demo")  # generate and look would read this one
    args = build_parser().parse_args([command])
    monkeypatch.setattr(glassgpt.assets, "asset", lambda *parts: package.joinpath(*parts))
    with pytest.raises(GlassError, match="no base model shipped"):
        base_model_path(args)
    shutil.copytree(tiny_run, package / SHIPPED_MODEL)
    assert (base_model_path(args), model_path(args)) == (package / SHIPPED_MODEL, Path("runs/demo"))
    assert base_model_path(build_parser().parse_args([command, "--model", "mine"])) == Path("mine")


def test_sft_without_model_tunes_the_shipped_base_not_the_demo_run(tiny_run: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch, capsys):
    import glassgpt.assets
    from glassgpt.runs import SHIPPED_MODEL

    monkeypatch.chdir(tmp_path)
    package = tmp_path / "package"
    shutil.copytree(tiny_run, tmp_path / "runs" / "demo")
    shutil.copytree(tiny_run, package / SHIPPED_MODEL)
    monkeypatch.setattr(glassgpt.assets, "asset", lambda *parts: package.joinpath(*parts))
    chats = tmp_path / "chats.jsonl"
    chats.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                              {"role": "assistant", "content": "Hello."}]}) + "\n")
    code, _, err = run_cli(capsys, "sft", "--data", str(chats), "--max-steps", "1", "--batch-size", "1",
                           "--no-progress", "--out", str(tmp_path / "chat"))
    assert code == 0, err
    assert json.loads((tmp_path / "chat" / "config.json").read_text())["parent"] == str(package / SHIPPED_MODEL)
