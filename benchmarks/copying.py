"""Can a model copy from its own context? (The skill that worked answers need.)

A worked answer restates parts of the question ("Spell strawberry letter by letter", "7 + 9 =
16" for 347 + 589), so a model must be able to find and copy tokens it has already read. In
large models, "induction heads" do this: the second time a passage appears, its tokens become
easy to predict. This script measures it: each text is fed twice in a row, and it prints the
mean log-probability of the tokens in the first and in the second copy, and how often the most
likely next token in the second copy is the copied one. A model that copies has a much higher
log-probability (and top-1 accuracy) on the second copy; one that does not scores both alike.

With `--learn STEPS` it asks instead whether a model can still *learn* to copy: a copy of it is
trained (AdamW, lr 1e-3, batches of 32) on nothing but random token sequences said again and
again (each row its own passage length), which only copying can predict, and the top-1 accuracy
on the repeats is printed every 25 steps. A model whose attention has saturated (one-hot heads)
stays near 0%.

    python benchmarks/copying.py src/glassgpt/assets/model runs/pipeline/sft
    python benchmarks/copying.py --learn 300 src/glassgpt/assets/model runs/small_qk50
"""

from __future__ import annotations

import argparse
import sys

import torch

from glassgpt.commands.common import positive_int
from glassgpt.errors import GlassError
from glassgpt.runs import load_run

TEXTS = {
    "a sentence of the corpus": "Mr. Bennet was among the earliest of those who waited on Mr. Bingley. He had always "
                                "intended to visit him, though to the last always assuring his wife that he should "
                                "not go",
    "a list of words": "tipholuses raspberry marianne thwarted incumbent propriety whaleman strawberry agate evans",
    "numbers": "347 + 589 = 936, 8364 - 7219 = 1145, 56 + 19 = 75, 902 - 31 = 871",
}


@torch.no_grad()
def copy_scores(model: torch.nn.Module, bos_id: int, ids: list[int]) -> tuple[float, float, float]:
    """(mean log p of the first copy, of the second copy, top-1 accuracy on the second copy)."""
    n = len(ids)
    x = torch.tensor([[bos_id, *ids, *ids]])
    logp = torch.log_softmax(model(x).logits.float(), dim=-1)[0, :-1]  # position t predicts token t+1
    targets = x[0, 1:]
    token_logp = logp.gather(1, targets[:, None])[:, 0]
    top1 = (logp[n:].argmax(-1) == targets[n:]).float().mean()
    return float(token_logp[:n].mean()), float(token_logp[n:].mean()), float(top1)


def learn_to_copy(model: torch.nn.Module, vocab_size: int, steps: int, length: int = 64,
                  report: int = 25) -> list[tuple[int, float, float]]:
    """Train `model` (in place) on random sequences said again and again; (step, loss, copy
    top-1) every `report` steps, stopping early once 90% of the repeats are copied.

    Each row's passage has its own length (length/2 to length tokens) and the row is 2 x length
    tokens, so no fixed distance back finds the token to copy: a head that always looks 64
    positions back (which a constant length of 64 teaches in ~100 steps) copies only the rows
    whose passage has that length, 1 in 33.
    Only looking up where the current token last appeared and taking what followed it (an
    induction head) copies them all."""
    generator = torch.Generator().manual_seed(0)
    model.float().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    positions = torch.arange(2 * length)
    found = []
    for step in range(1, steps + 1):
        periods = torch.randint(length // 2, length + 1, (32, 1), generator=generator)
        passages = torch.randint(0, vocab_size, (32, 2 * length), generator=generator)
        rows = passages.gather(1, positions % periods)
        loss = model(rows[:, :-1], targets=rows[:, 1:]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % report == 0 or step == steps:
            with torch.no_grad():
                predicted = model(rows[:, :-1]).logits.argmax(-1)
            repeats = positions[1:] >= periods  # target t + 1 is a copy of the token `period` back
            right = (predicted == rows[:, 1:])[repeats]
            found.append((step, loss.item(), float(right.float().mean())))
            if found[-1][2] > 0.9:
                break
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="run folders")
    parser.add_argument("--learn", type=positive_int, metavar="STEPS",
                        help="instead: train each model on random sequences said twice for up to STEPS steps")
    args = parser.parse_args(argv)
    if not args.learn:
        print(f"{'model':<34} {'text':<26} {'tokens':>6} {'log p 1st':>9} {'log p 2nd':>9} {'top-1 2nd':>9}")
    for path in args.models:
        try:
            run = load_run(path)
        except GlassError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        context = run.config.model.context_length
        if args.learn:
            for step, loss, top1 in learn_to_copy(run.model, run.config.model.vocab_size, args.learn,
                                                  length=min(64, context // 2)):
                print(f"{str(path)[-34:]:<34} step {step:>4}  loss {loss:6.3f}  copy top-1 {top1:4.0%}", flush=True)
            continue
        for name, text in TEXTS.items():
            ids = run.tokenizer.encode(text)[:(context - 1) // 2]  # both copies fit
            first, second, top1 = copy_scores(run.model, run.tokenizer.bos_id, ids)
            print(f"{str(path)[-34:]:<34} {name:<26} {len(ids):>6} {first:>9.2f} {second:>9.2f} {top1:>9.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
