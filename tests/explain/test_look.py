"""`glassgpt look`: every view's numbers, text, JSON, PNG and one-line errors, on a tiny model."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

import glassgpt.assets
from glassgpt.cli import main
from glassgpt.config import ModelConfig, RunConfig, TokenizerConfig
from glassgpt.engine import Engine, next_token_probabilities
from glassgpt.explain.look import views
from glassgpt.explain.look.text import visible
from glassgpt.model import GPT
from glassgpt.runs import SHIPPED_MODEL, RunFolder, load_run
from glassgpt.tokenizer import Tokenizer
from pixels import (  # the pixel helpers of the picture tests
    Frame,
    assert_markers,
    autoscaled,
    axes_box,
    bars,
    cell_centres,
    cmap_value,
    colour_mask,
    frames,
    read_rgb,
    runs,
)

RIVER = "He sat on the bank of the river"
MONEY = "She put the money in the bank"


@pytest.fixture(scope="module")
def loaded(tiny_run: Path):
    run = load_run(tiny_run)
    return run.model, run.tokenizer


@pytest.fixture(scope="module")
def char_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained model with a character tokenizer: views must work whatever the tokenizer."""
    out = tmp_path_factory.mktemp("runs") / "char"
    out.mkdir()
    tokenizer = Tokenizer.train_char(["the quick brown fox jumps over the lazy dog. The bank"])
    config = RunConfig(
        model=ModelConfig(
            vocab_size=tokenizer.vocab_size, context_length=32, n_layer=1, n_head=2, d_model=16
        ),
        tokenizer=TokenizerConfig("char"),
    )
    torch.manual_seed(0)
    RunFolder(out).save_config(config)
    RunFolder(out).save_weights(GPT(config.model).state_dict(), step=0)
    tokenizer.save(out)
    return out


def look(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(["look", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def look_json(capsys: pytest.CaptureFixture, *args: str) -> dict:
    code, out, err = look(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 1
    assert err.startswith("glassgpt: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err + out
    for fragment in fragments:
        assert fragment in err, err


# ----------------------------------------------------------------------------- pictures
# Each view's PNG is read back and compared with the numbers it draws (the same view as JSON).


def assert_bars(image: np.ndarray, box: Frame, colour: str, values, x_max: float) -> list:
    """Horizontal bars from x = 0 (the left spine) to x_max (the right one), largest first: a
    bar per value, in order, each ending where its value is (a bar under 5 pixels may be too
    short to find, one under 1.5 must not be there). Returns the bars found."""
    top, bottom, left, right = box
    ends = [left + v / x_max * (right - left) for v in values]
    found = bars(colour_mask(image, colour, tol=0.05), box, horizontal=True)
    sure = sum(end - left >= 5 for end in ends)
    assert sure <= len(found) <= sum(end - left >= 1.5 for end in ends), (colour, found, ends)
    for (_, first, last), end in zip(found, ends, strict=False):
        assert first - left <= 3 and abs(last - end) <= 2.5, (colour, found, ends)
    return found


def assert_next_png(path: Path, data: dict) -> None:
    """One bar chart per temperature, x from 0 to 1.12: a bar per top token in the table's order
    (blue, orange at T = 1) as long as its probability, then a grey one for all the others."""
    image = read_rgb(path)
    panels = frames(image)
    assert len(panels) == len(data["temperatures"]) == 4
    for box, bars_t in zip(panels, data["temperatures"], strict=True):
        colour = "tab:orange" if bars_t["temperature"] == 1 else "tab:blue"
        found = assert_bars(image, box, colour, bars_t["probabilities"], 1.12)
        rest = assert_bars(image, box, "lightgray", [bars_t["rest"]], 1.12)
        if rest:  # the grey bar is the last row
            assert all(rest[0][0] > middle for middle, _, _ in found)


def assert_tokens_png(path: Path, data: dict) -> None:
    """Every split's tokens as boxes in reading order, each as wide as its text in characters."""
    image = read_rgb(path)
    widths = [max(1, len(visible(p["text"]))) for s in data["splits"] for p in s["pieces"]]
    lines = runs((image.min(axis=2) < 0.97).mean(axis=1) > 0.1, min_len=25)  # boxes, not text
    found = []
    for top, bottom in lines:
        row = image[top + int(0.85 * (bottom - top))]  # below the text in the boxes
        # each box's face is one flat tint; black edges part it from the next box
        found += [b - a for a, b in runs((row.max(axis=1) > 0.5) & (row.min(axis=1) < 0.97), 3)]
    assert len(found) == len(widths), (found, widths)
    scale = sum(found) / sum(widths)
    assert all(abs(f - scale * w) <= 3 for f, w in zip(found, widths, strict=True)), found


def assert_embeddings_png(path: Path, data: dict) -> None:
    """Bars of the neighbours' and the analogy's similarities, and the sentence similarity
    matrix whose colours read back (viridis, from its minimum to 1) to its values."""
    image = read_rgb(path)
    panels = frames(image)
    assert len(panels) == 4  # neighbours, analogy, map, sentences
    for box, items, colour in (
        (panels[0], data["near"][0]["neighbours"], "tab:green"),
        (panels[1], data["analogy"]["candidates"], "tab:purple"),
    ):
        values = [item["similarity"] for item in items]
        assert min(values) > 0  # bars from the left spine, x from 0 to 1
        assert_bars(image, box, colour, values, 1.0)
    matrix = np.array(data["sentences"]["matrix"])
    low, n = matrix.min(), len(matrix)
    top, bottom, left, right = panels[3]
    for i in range(n):
        for j in range(n):  # off the centre, where the value is written
            y = round(top + (i + 0.2) * (bottom - top) / n)
            x = round(left + (j + 0.2) * (right - left) / n)
            value, miss = cmap_value(image[y, x], "viridis")
            assert miss < 0.02, (i, j)
            assert abs(low + value * (1 - low) - matrix[i, j]) < 0.02 * (1 - low) + 1e-6, (i, j)


def assert_attention_png(path: Path, data: dict) -> None:
    """One heatmap per (layer, head), row = query: every cell above the diagonal is blank
    (causal) and every other cell's colour reads back (magma, 0..1) to its weight."""
    image = read_rgb(path)
    weights = np.array(data["weights"])
    layers, heads, n, _ = weights.shape
    panels = frames(image)
    assert len(panels) == layers * heads
    for k, box in enumerate(panels):
        layer, head = divmod(k, heads)
        for i, row in enumerate(cell_centres(box, n, n)):
            for j, (y, x) in enumerate(row):
                if j > i:
                    assert image[y, x].min() > 0.97, (layer, head, i, j)
                    continue
                value, miss = cmap_value(image[y, x], "magma")
                assert miss < 0.02, (layer, head, i, j)
                assert abs(value - weights[layer, head, i, j]) < 0.01, (layer, head, i, j)


def assert_context_png(path: Path, data: dict) -> None:
    """The word's similarity between the sentences (black) and to each context word (its own
    colour, one line per sentence) at each depth."""
    image = read_rgb(path)
    depths = range(len(data["between"]))
    series = [("black", depths, data["between"])]
    for k, curve in enumerate(data["towards"]):
        colour = f"C{k}"
        series += [
            (colour, depths, curve["similarity"][0]),
            (colour, depths, curve["similarity"][1]),
        ]
    assert_markers(image, axes_box(image), series, min_checked=2 * len(series))


def assert_trajectory_png(path: Path, points: np.ndarray) -> None:
    """One dot per token at its 2-D point, coloured by its place in the text (viridis)."""
    image = read_rgb(path)
    box = frames(image)[0]  # the colour bar is too narrow to be a frame
    n = len(points)
    colours = matplotlib.colormaps["viridis"](np.linspace(0, 1, n))[:, :3]
    cols, rows = autoscaled(box, points[:, 0], points[:, 1], points[:, 0], points[:, 1])
    free = [
        i
        for i in range(n)
        if not any(
            abs(cols[j] - cols[i]) < 10 and abs(rows[j] - rows[i]) < 10 for j in range(i + 1, n)
        )
    ]
    assert len(free) >= n // 2  # dots not covered by a later one
    for i in free:
        x, y = round(cols[i]), round(rows[i])
        mask = colour_mask(image, tuple(colours[i]), tol=0.05)
        assert mask[y - 3 : y + 4, x - 3 : x + 4].sum() >= 20, (i, x, y)


def assert_pipeline_png(path: Path, data: dict) -> None:
    """The residual norms' heatmap reads back (viridis, min..max) to the norms, and the top
    probabilities are bars as long as they are (x from 0 to 1.3 x the largest + 0.02)."""
    image = read_rgb(path)
    panels = frames(image)
    assert len(panels) == 4  # norms, blocks, logits, probabilities
    norms = np.array(data["residual_norms"])
    lo, hi = norms.min(), norms.max()
    for i, row in enumerate(cell_centres(panels[0], *norms.shape)):
        for j, (y, x) in enumerate(row):
            value, miss = cmap_value(image[y, x], "viridis")
            assert miss < 0.02 and abs(lo + value * (hi - lo) - norms[i, j]) < 0.01 * (hi - lo)
    probs = [row["probability"] for row in data["top"]]
    assert_bars(image, panels[3], "tab:orange", probs, min(1.0, max(probs) * 1.3 + 0.02))


# ----------------------------------------------------------------------------- next


def test_next_table_probabilities_are_sorted_and_sum_to_one(loaded) -> None:
    model, tokenizer = loaded
    ids = views.encode_text(tokenizer, "The Lord is my", model.config.context_length)
    table = views.next_table(model, tokenizer, ids, top=model.config.vocab_size)
    probs = [r.probability for r in table.rows]
    assert probs == sorted(probs, reverse=True)
    assert table.rows[-1].cumulative == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(np.cumsum(probs), [r.cumulative for r in table.rows], atol=1e-5)
    for shown in table.temperatures:
        assert sum(shown.probabilities) + shown.rest == pytest.approx(1.0, abs=1e-4)
    zero = table.temperatures[0]
    assert zero.temperature == 0 and zero.probabilities[0] == 1.0
    # Higher temperature flattens: the top token loses probability.
    tops = [b.probabilities[0] for b in table.temperatures]
    assert tops == sorted(tops, reverse=True)


def test_look_next_text_json_and_png(tiny_run: Path, tmp_path: Path, capsys) -> None:
    png = tmp_path / "next.png"
    code, out, err = look(capsys, "next", "The Lord is my", "--model", tiny_run, "--png", png)
    assert code == 0, err
    assert f"model: {tiny_run}" in out
    assert "rank" in out and "cum" in out and "T=1.5" in out
    assert_next_png(png, look_json(capsys, "next", "The Lord is my", "--model", tiny_run)["data"])
    data = look_json(capsys, "next", "The Lord is my", "--model", tiny_run, "--top", "5")
    rows = data["data"]["rows"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["probability"] for r in rows] == sorted(
        (r["probability"] for r in rows), reverse=True
    )
    assert data["model"]["n_layer"] == 2


def test_look_next_step_reads_choices_from_piped_stdin(tiny_run: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n3\nnonsense\nq\n"))
    code, out, err = look(capsys, "next", "The Lord", "--model", tiny_run, "--step", "--top", "5")
    assert code == 0, err
    assert "step 1: took rank 1" in out
    assert "step 2: took rank 3" in out
    assert "is not a choice" in out
    assert "step 3" not in out
    monkeypatch.setattr("sys.stdin", io.StringIO("\n" * 50))
    code, out, _ = look(capsys, "next", "The", "--model", tiny_run, "--step", "--max-steps", "3")
    assert code == 0 and "step 3:" in out and "step 4:" not in out and "3 steps done" in out


# ----------------------------------------------------------------------------- tokens


def test_look_tokens_splits_with_ours_and_gpt2(tiny_run: Path, tmp_path: Path, capsys) -> None:
    text = "The Lord is my shepherd; I shall not want.\nHe maketh me"
    png = tmp_path / "tokens.png"
    data = look_json(capsys, "tokens", text, "--model", tiny_run, "--png", png)
    splits = data["data"]["splits"]
    assert [s["kind"] for s in splits] == ["bpe", "gpt2"]
    gpt2 = Tokenizer.gpt2()
    assert [p["id"] for p in splits[1]["pieces"]] == gpt2.encode(text)
    for split in splits:
        assert "".join(p["text"] for p in split["pieces"]) == text
    assert_tokens_png(png, data["data"])
    code, out, _ = look(capsys, "tokens", text, "--model", tiny_run)
    assert code == 0 and "GPT-2" in out and "·Lord" in out and "↵" in out
    assert "characters per token" in out


# ----------------------------------------------------------------------------- embeddings


def test_neighbours_are_sorted_and_exclude_the_word(loaded) -> None:
    model, tokenizer = loaded
    near = views.nearest_neighbours(model, tokenizer, "king", top=8)
    sims = [n.similarity for n in near.neighbours]
    assert len(sims) == 8 and sims == sorted(sims, reverse=True)
    specials = set(tokenizer.special_ids.values())
    assert not {n.id for n in near.neighbours} & (set(near.word.ids) | specials)
    # The scores are real cosine similarities over the input embeddings.
    e = model.embed.weight.detach()
    query = e[list(near.word.ids)].mean(0)
    first = near.neighbours[0]
    expected = torch.nn.functional.cosine_similarity(e[first.id], query, dim=0)
    assert first.similarity == pytest.approx(float(expected), abs=1e-5)


def test_analogy_map_and_sentence_similarity(loaded) -> None:
    model, tokenizer = loaded
    a = views.analogy(model, tokenizer, "man", "woman", "king", expect="queen")
    scores = [c.similarity for c in a.candidates]
    assert scores == sorted(scores, reverse=True) and len(scores) == 5
    assert not {c.id for c in a.candidates} & (set(a.a.ids) | set(a.b.ids) | set(a.c.ids))
    assert a.expect_rank is not None and 1 <= a.expect_rank <= a.candidates_total
    m = views.word_map(model, tokenizer, ["king", "queen", "sea", "ship"])
    assert m.points.shape == (4, 2) and 0 <= m.explained[1] <= m.explained[0] <= 1
    s = views.sentence_similarity(model, tokenizer, ["The king is here.", "A whale swam.", "Go."])
    assert s.matrix.shape == (3, 3)
    assert np.allclose(s.matrix, s.matrix.T, atol=1e-5)
    assert np.allclose(np.diag(s.matrix), 1.0, atol=1e-5)


def test_look_embeddings_default_showcase(tiny_run: Path, tmp_path: Path, capsys) -> None:
    png = tmp_path / "emb.png"
    code, out, err = look(capsys, "embeddings", "--model", tiny_run, "--png", png)
    assert code == 0, err
    assert "nearest neighbours of '·king'" in out
    assert "analogy man : woman :: king" in out and "expected '·queen': rank" in out
    assert "2-D map" in out and "sentence embeddings" in out
    assert_embeddings_png(png, look_json(capsys, "embeddings", "--model", tiny_run)["data"])


def test_a_split_word_uses_the_mean_and_says_so(loaded) -> None:
    model, tokenizer = loaded
    near = views.nearest_neighbours(model, tokenizer, "shepherdess")
    assert near.word.split  # a 512-token vocabulary splits it
    view = views.EmbeddingsView((near,), None, None, None, model.num_parameters())
    from glassgpt.explain.look.text import render_embeddings

    assert "tokens" in render_embeddings(view) and "mean vector" in render_embeddings(view)


def test_unknown_word_with_a_char_tokenizer_is_a_one_line_error(char_run: Path, capsys) -> None:
    code, out, err = look(capsys, "embeddings", "--model", char_run, "--near", "zebra€")
    assert_one_line_error(code, out, err, "unknown word 'zebra€'")
    code, out, err = look(capsys, "embeddings", "--model", char_run, "--near", "the", "--top", "3")
    assert code == 0, err
    assert "4 tokens" in out  # " the" is four characters here, and the output says so


# ----------------------------------------------------------------------------- attention


def test_look_attention_weights_are_causal_and_normalised(
    tiny_run: Path, tmp_path: Path, capsys
) -> None:
    png = tmp_path / "attn.png"
    data = look_json(
        capsys, "attention", "In the beginning God created", "--model", tiny_run, "--png", png
    )["data"]
    w = np.array(data["weights"])
    n = len(data["tokens"])
    assert w.shape == (2, 4, n, n)
    assert np.allclose(w.sum(-1), 1.0, atol=1e-4)
    assert np.all(w[..., np.triu_indices(n, 1)[0], np.triu_indices(n, 1)[1]] == 0)
    assert len(data["focus"]) == 8 and data["position"] == n - 1
    for focus in data["focus"]:
        weights = [t["weight"] for t in focus["targets"]]
        assert weights == sorted(weights, reverse=True)
    assert_attention_png(png, data)
    code, out, err = look(
        capsys,
        "attention",
        "In the beginning",
        "--model",
        tiny_run,
        "--layer",
        "1",
        "--head",
        "0",
        "--position",
        "2",
    )
    assert code == 0, err
    assert "layer 1 head 0" in out and "position 2" in out and "all rows" in out


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--layer", "2", "valid layers are 0..1"),
        ("--head", "-1", "valid heads are 0..3"),
        ("--position", "99", "valid positions are 0.."),
    ],
)
def test_look_attention_bad_index_is_a_one_line_error(
    tiny_run: Path, capsys, option, value, fragment
) -> None:
    code, out, err = look(
        capsys, "attention", "In the beginning", "--model", tiny_run, option, value
    )
    assert_one_line_error(code, out, err, fragment)


# ----------------------------------------------------------------------------- context


def test_look_context_measures_the_word_layer_by_layer(
    tiny_run: Path, tmp_path: Path, capsys
) -> None:
    png = tmp_path / "context.png"
    data = look_json(
        capsys,
        "context",
        RIVER,
        MONEY,
        "--word",
        "bank",
        "--to",
        "river",
        "money",
        "--model",
        tiny_run,
        "--png",
        png,
    )["data"]
    depths = data["depths"]
    assert depths[0] == "embedding" and depths[-1] == "final norm" and len(depths) == 4
    between = data["between"]
    assert between[0] == pytest.approx(1.0, abs=1e-5)  # the same token embedding in both
    assert all(-1 <= x <= 1.00001 for x in between)
    curves = {c["word"]: c for c in data["towards"]}
    assert curves["river"]["source"] == "sentence 1" and curves["money"]["source"] == "sentence 2"
    assert np.array(curves["river"]["similarity"]).shape == (2, 4)
    assert any("comes after 'bank'" in note for note in data["notes"])
    assert_context_png(png, data)


def test_look_context_word_missing_from_a_sentence(tiny_run: Path, capsys) -> None:
    code, out, err = look(
        capsys, "context", RIVER, "She went home", "--word", "bank", "--model", tiny_run
    )
    assert_one_line_error(code, out, err, "'bank' is not in sentence 2")


def test_context_uses_the_same_vectors_as_the_trace(loaded) -> None:
    model, tokenizer = loaded
    view = views.context_view(model, tokenizer, [RIVER, MONEY], "bank")
    # "bank" is found where the tokenizer put it, with its leading space.
    for sentence, position, tokens in zip(view.sentences, view.positions, view.tokens, strict=True):
        assert tokens[position].strip() == tokenizer.token_str(view.word.ids[-1]).strip()
        assert "bank" in sentence


# ----------------------------------------------------------------------------- trajectory


def test_look_trajectory(tiny_run: Path, tmp_path: Path, capsys, loaded) -> None:
    model, tokenizer = loaded
    text = "And God said, Let there be light"
    ids = views.encode_text(tokenizer, text, model.config.context_length)
    view = views.trajectory_view(model, tokenizer, ids)
    assert view.points.shape == (len(ids) - 1, 2)
    assert view.step[0] == 0 and np.all(view.step[1:] > 0)
    png = tmp_path / "trajectory.png"
    code, out, err = look(capsys, "trajectory", text, "--model", tiny_run, "--png", png)
    assert code == 0, err
    assert "cos prev" in out and "·" in out
    assert_trajectory_png(png, view.points)  # the command draws the same view


# ----------------------------------------------------------------------------- pipeline


def test_pipeline_probabilities_equal_the_engines(loaded) -> None:
    model, tokenizer = loaded
    ids = views.encode_text(tokenizer, "The Lord is my shepherd", model.config.context_length)
    view = views.pipeline_view(model, tokenizer, ids)
    engine = Engine(model, tokenizer)
    expected = next_token_probabilities(engine.next_token_logits(ids)[None], 1.0)[0]
    np.testing.assert_allclose(view.probabilities, expected.numpy(), atol=1e-6)
    assert view.probability_sum == pytest.approx(1.0, abs=1e-5)
    assert view.chosen.id == int(expected.argmax())
    assert len(view.blocks) == model.config.n_layer and len(view.embeddings) == len(ids)
    last_stream = view.residual_norms[-1, -1]
    assert view.blocks[-1].residual.norm == pytest.approx(float(last_stream), rel=1e-5)


def test_look_pipeline_text_and_png(tiny_run: Path, tmp_path: Path, capsys) -> None:
    png = tmp_path / "pipeline.png"
    code, out, err = look(capsys, "pipeline", "The Lord is my", "--model", tiny_run, "--png", png)
    assert code == 0, err
    for step in (
        "1. tokens -> ids",
        "2. embeddings",
        "3. 2 blocks",
        "4. final embedding",
        "5. logits: 512 scores",
        "6. softmax",
        "7. choice",
    ):
        assert step in out
    data = look_json(capsys, "pipeline", "The Lord is my", "--model", tiny_run)["data"]
    assert_pipeline_png(png, data)
    assert "probabilities" not in data and data["probability_sum"] == pytest.approx(1.0, abs=1e-5)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("view", ["next", "attention", "trajectory", "pipeline"])
def test_empty_and_too_long_text_are_one_line_errors(tiny_run: Path, capsys, view: str) -> None:
    code, out, err = look(capsys, view, "", "--model", tiny_run)
    assert_one_line_error(code, out, err, "the text is empty")
    code, out, err = look(capsys, view, "word " * 200, "--model", tiny_run)
    assert_one_line_error(code, out, err, "the model's context is 64: shorten it")


def test_no_model_no_demo_and_no_shipped_model_says_how_to_make_one(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(glassgpt.assets, "asset", lambda *parts: tmp_path.joinpath("package", *parts))
    code, out, err = look(capsys, "next", "The")
    assert_one_line_error(code, out, err, "glassgpt demo")


def test_without_model_views_read_the_demo_run_else_the_shipped_model(tiny_run: Path, char_run: Path, tmp_path: Path,
                                                                     capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    package = tmp_path / "package"
    shutil.copytree(tiny_run, package / SHIPPED_MODEL)
    monkeypatch.setattr(glassgpt.assets, "asset", lambda *parts: package.joinpath(*parts))
    code, out, _ = look(capsys, "next", "The")
    assert code == 0 and str(package / SHIPPED_MODEL) in out  # the header says which model it read
    shutil.copytree(char_run, tmp_path / "runs" / "demo")  # the user's own demo run comes first
    code, out, _ = look(capsys, "next", "The")
    assert code == 0 and str(Path("runs/demo")) in out and str(package) not in out


def test_views_work_with_a_char_tokenizer(char_run: Path, tmp_path: Path, capsys) -> None:
    for args in (
        ["next", "the bank"],
        ["attention", "the bank"],
        ["pipeline", "the bank"],
        ["context", "the bank", "a bank", "--word", "bank"],
    ):
        code, _, err = look(capsys, *args, "--model", char_run)
        assert code == 0, (args, err)
