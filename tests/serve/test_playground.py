"""The playground in a real headless Chromium (Debian's, driven by Playwright; nothing downloaded).

Every number the page shows is checked against the look views computed directly on the model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from glassgpt.explain.look import views
from glassgpt.runs import load_run
from live_server import serving

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 30_000

sync_api = pytest.importorskip("playwright.sync_api")
if shutil.which(CHROMIUM) is None and not os.environ.get("CI"):  # CI must run it: .ci/run installs it
    pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def bar_probs(page) -> list[float]:
    return [float(x) for x in page.eval_on_selector_all(".bar-row", "rows => rows.map(r => r.dataset.prob)")]


def wait_for_probs(page, expected: list[float]) -> None:
    """Wait until the page's bars carry `expected` (6 decimals, as the page writes them)."""
    page.wait_for_function(
        "want => { const got = [...document.querySelectorAll('.bar-row')].map(r => r.dataset.prob);"
        " return got.length === want.length && got.every((g, i) => g === want[i]); }",
        arg=[f"{p:.6f}" for p in expected], timeout=TIMEOUT_MS)


def test_playground_next_token_step_attention_and_screenshot(tiny_run: Path, browser, tmp_path: Path):
    run = load_run(tiny_run)
    model, tok = run.model, run.tokenizer
    with serving(run) as running:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(running.url)
        page.wait_for_selector("body[data-ready='1']", timeout=TIMEOUT_MS)
        assert run.path.name in page.inner_text("#model-badge")

        # type a prompt: the bars are the model's next-token probabilities (temperature 1)
        text = "The king said"
        page.fill("#prompt", text)
        ids = views.encode_text(tok, text, model.config.context_length)
        reference = views.next_table(model, tok, ids, 12, (1.0,))
        wait_for_probs(page, [r.probability for r in reference.rows])
        labels = page.eval_on_selector_all(".bar-row .label", "ls => ls.map(l => l.textContent)")
        shown = [r.token.replace(" ", "\u00b7").replace("\n", "\u21b5").replace("\t", "\u21e5") for r in reference.rows]
        assert labels == shown
        page.wait_for_function(f"document.querySelectorAll('#tokens .tok').length === {len(ids)}")

        # move the temperature: the bars reshape to the engine's distribution at that temperature
        before = bar_probs(page)
        page.fill("#temperature", "0.3")
        cold = views.next_table(model, tok, ids, 12, (0.3,)).temperatures[0].probabilities
        wait_for_probs(page, list(cold))
        after = bar_probs(page)
        assert after != before and after[0] > before[0]  # colder = sharper
        page.fill("#topk", "3")  # top-k leaves only three bars standing
        filtered = views.next_table(model, tok, ids, 12, (0.3,), top_k=3).temperatures[0].probabilities
        wait_for_probs(page, list(filtered))
        assert sum(p > 0 for p in bar_probs(page)) == 3
        page.fill("#topk", "0")
        page.fill("#temperature", "1")

        # step: click the second most likely token; the text grows by exactly that token
        second = reference.rows[1]
        page.click(f".bar-row[data-token-id='{second.id}']")
        grown = tok.decode([*ids[1:], second.id])
        page.wait_for_function("want => document.querySelector('#prompt').value === want", arg=grown,
                               timeout=TIMEOUT_MS)
        page.wait_for_function(f"document.querySelectorAll('#tokens .tok').length === {len(ids) + 1}")
        after_click = views.next_table(model, tok, [*ids, second.id], 12, (1.0,))
        wait_for_probs(page, [r.probability for r in after_click.rows])
        # the Step button draws one token with the settings and appends it
        page.click("#step")
        page.wait_for_function("n => document.querySelector('#prompt').value.length > n", arg=len(grown),
                               timeout=TIMEOUT_MS)
        page.wait_for_timeout(400)  # let the refresh after the step land
        final_text = page.input_value("#prompt")
        assert final_text.startswith(grown)

        # attention: one cell per (row, column) of the tokens, weights as the look view computes them
        page.click("button[data-tab='attention']")
        final_ids = views.encode_text(tok, final_text, model.config.context_length)
        T = len(final_ids)
        page.wait_for_function(f"document.querySelectorAll('#heatmap rect.cell').length === {T * T}",
                               timeout=TIMEOUT_MS)
        page.click("#layers button[data-index='1']")
        page.click("#heads button[data-index='2']")
        page.wait_for_selector("#heads button.on[data-index='2']")
        weights = views.attention_view(model, tok, final_ids).weights[1, 2]
        cells = page.eval_on_selector_all(
            "#heatmap rect.cell", "cs => cs.map(c => [+c.dataset.row, +c.dataset.col, +c.dataset.weight])")
        assert len(cells) == T * T
        got = np.zeros((T, T))
        for row, col, weight in cells:
            got[row, col] = weight
        np.testing.assert_allclose(got, weights, atol=2e-6)
        page.hover(f"#heatmap rect.cell[data-row='{T - 1}'][data-col='0']")
        assert "\u2192" in page.inner_text("#tip")  # hover names both tokens and the weight

        # the other tabs draw something real
        page.click("button[data-tab='space']")
        page.wait_for_function(f"document.querySelectorAll('#trajectory circle.point').length === {T - 1}",
                               timeout=TIMEOUT_MS)
        page.wait_for_function("document.querySelectorAll('#word-map circle.point').length >= 3", timeout=TIMEOUT_MS)
        page.click("button[data-tab='model']")
        assert f"{model.num_parameters():,}" in page.inner_text("#facts")
        assert page.query_selector("#curve path") is not None
        page.click("button[data-tab='chat']")
        assert "base model" in page.inner_text("#chat-off")

        page.click("button[data-tab='next']")
        shot = tmp_path / "playground.png"
        page.screenshot(path=str(shot), full_page=True)
        assert not errors, errors

    image = imread(shot)[..., :3]
    assert image.shape[0] > 600 and image.shape[1] >= 1280
    assert image.std() > 0.1  # not a blank page
    colours = {tuple(px) for px in (image[::7, ::7] * 255).astype(int).reshape(-1, 3)}
    assert len(colours) > 200
    accent = np.array([0x5B, 0x4B, 0xDB]) / 255  # the bars' colour is on the page
    assert (np.abs(image - accent).max(axis=-1) < 0.08).sum() > 500


def test_playground_chat_tab_talks_to_a_chat_model(chat_run_dir: Path, browser):
    with serving(load_run(chat_run_dir)) as running:
        page = browser.new_page()
        page.goto(running.url)
        page.wait_for_selector("body[data-ready='1']", timeout=TIMEOUT_MS)
        page.click("button[data-tab='chat']")
        assert page.is_visible("#chat-on") and not page.is_visible("#chat-off")
        page.fill("#chat-input", "Hello there")
        page.click("#chat-form button")
        page.wait_for_selector(".msg.user", timeout=TIMEOUT_MS)
        assert page.inner_text(".msg.user") == "Hello there"
        page.wait_for_function("() => { const a = document.querySelector('.msg.assistant');"
                               " return a && a.textContent !== '\u2026'; }", timeout=TIMEOUT_MS)
        page.wait_for_function("() => document.querySelector('#messages').dataset.done === '1'", timeout=TIMEOUT_MS)
        assert page.inner_text(".msg.assistant").strip()
