"""Reinforcement learning on problems with checkable answers (GRPO-style), on the one loop.

Each step the chat model practises: for each of a few training problems of the built-in tasks
(`glassgpt.data.tasks`) it samples a *group* of answers, and each answer is checked:

* **reward** = 1 when the final answer is right *and* the reply ended with `<|assistant_end|>`
  within `max_response_tokens`; 0 otherwise (wrong, malformed, or cut off). Nothing else: no
  bonus for the format or for length.
* **advantage** = reward minus the mean reward of its group. By default it is *not* divided by
  the group's standard deviation (as in Dr. GRPO: dividing gives the groups that are almost all
  right or all wrong the largest weights); `RLConfig.advantage = "std"` divides (GRPO as
  DeepSeekMath wrote it). A group whose answers all score the same teaches nothing.
* **loss** = -sum over every answer token of advantage x log p(token), divided by the number
  of answer tokens in the whole step (token-level normalisation, as DAPO: a long answer counts
  by its tokens, not as one sample). The answers are sampled by the model being trained, once
  per step, so this is the plain on-policy policy gradient: no importance ratio or clipping.

The run logs, per step, `reward_mean`, `response_length_mean` (tokens), `truncated_frac`, and
every `eval_every` steps `heldout_accuracy` (greedy, on held-out problems), and draws them.
Nobody tells the model to write its steps: the data showed both styles, and if the worked style
earns more reward, RL makes it more likely, and answers get longer.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from glassgpt.chat import load_chat_model
from glassgpt.chat_eval import evaluate_engine, total
from glassgpt.chat_template import ChatTokens, render_prompt
from glassgpt.config import RLConfig, RunConfig, TrainConfig
from glassgpt.data.tasks import Problem, draw, get_task, reward
from glassgpt.engine import Engine, SamplingConfig
from glassgpt.errors import GlassError
from glassgpt.model import GPT
from glassgpt.runs import RunFolder, TrainerState
from glassgpt.runtime import Log, choose_dtype, resolve_device, seed_everything
from glassgpt.train.loop import LoopHooks, run_loop
from glassgpt.train.pretrain import (
    TrainResult,
    checkpoint_saver,
    refuse_out_at_parent,
    start_folder,
)
from glassgpt.train.sft import start_training

#: RL's recipe: small constant steps (the policy gradient is noisy; a big step can wreck the
#: chat model's format), one optimizer step per batch of fresh samples. On the first shipped base's
#: chat model, lr 1e-4 on every task cost 2 points of held-out accuracy in 150 steps; on addition,
#: from the pipeline's chat model, 5e-5 got 78.5% of 200 held-out sums after 60 steps and 2e-5
#: 90.5% (the larger steps also unlearned some column sums; README).
RL_TRAIN = TrainConfig(batch_size=8, max_steps=60, optimizer="adamw", lr=2e-5, schedule="cosine", min_lr_ratio=1.0,
                       warmup_steps=0, weight_decay=0.0, grad_clip=1.0, eval_every=10, log_every=1, save_every=10,
                       dtype="fp32")
RL_PANELS = [("reward_mean", "mean reward (training samples)"), ("heldout_accuracy", "held-out accuracy (greedy)"),
             ("response_length_mean", "mean response length (tokens)")]


#: Added to the group's standard deviation before dividing by it (a group that agrees has 0).
STD_EPS = 1e-4


def group_advantages(rewards: Sequence[float], divide_by_std: bool = False) -> list[float]:
    """Each reward minus its group's mean; with `divide_by_std`, over the group's sample standard
    deviation (+ `STD_EPS`) too, as GRPO (and TRL) do."""
    mean = sum(rewards) / len(rewards)
    centred = [r - mean for r in rewards]
    if not divide_by_std:
        return centred
    std = (sum(c * c for c in centred) / (len(rewards) - 1)) ** 0.5
    return [c / (std + STD_EPS) for c in centred]


@dataclass(frozen=True)
class Sample:
    """One practice answer: the ids the model wrote (its end token included when it ended)."""

    prompt_ids: list[int]
    response_ids: list[int]
    reward: float
    advantage: float
    truncated: bool


def samples_batch(samples: Sequence[Sample], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs x, targets y (-1 outside the responses) and per-position advantages, padded to one length."""
    length = max(len(s.prompt_ids) + len(s.response_ids) for s in samples) - 1
    x = torch.full((len(samples), length), pad_id, dtype=torch.long)
    y = torch.full((len(samples), length), -1, dtype=torch.long)
    adv = torch.zeros((len(samples), length))
    for i, s in enumerate(samples):
        ids = s.prompt_ids + s.response_ids
        x[i, :len(ids) - 1] = torch.tensor(ids[:-1])
        start = len(s.prompt_ids) - 1  # the position whose next token is the response's first
        y[i, start:len(ids) - 1] = torch.tensor(s.response_ids)
        adv[i, start:len(ids) - 1] = s.advantage
    return x, y, adv


def policy_gradient_loss(model: torch.nn.Module, batch: Sequence[torch.Tensor], normaliser: float) -> torch.Tensor:
    """-sum(advantage x log p(token)) over the response tokens of `batch`, divided by `normaliser`
    (the number of response tokens of the whole step)."""
    x, y, adv = batch
    logits = model(x).logits.float()
    counted = y != -1
    logp = torch.gather(F.log_softmax(logits, dim=-1), 2, y.clamp(min=0)[..., None])[..., 0]
    return -(adv * logp * counted).sum() / normaliser


class PracticeBatches:
    """Each step: fresh training problems, a group of sampled answers each, rewards and advantages."""

    def __init__(self, engine: Engine, rl: RLConfig, batch_size: int, seed: int) -> None:
        self.engine, self.rl, self.batch_size = engine, rl, batch_size
        self.tasks = [get_task(name) for name in rl.tasks]
        self.tokens = ChatTokens.of(engine.tokenizer)
        self.pad_id = engine.tokenizer.special_ids["<|pad|>"]
        self.generator = torch.Generator().manual_seed(seed)
        self.stats: dict[str, float] = {}

    def _problem(self, rng: random.Random) -> Problem:
        problem = draw(rng.choice(self.tasks), "train", rng)
        if problem is None:
            raise GlassError("a task made no training problem")
        return problem

    def practise(self, problem: Problem, seed: int) -> list[Sample]:
        """A group of sampled answers to `problem`, rewarded and compared."""
        prompt = render_prompt(self.engine.tokenizer, [{"role": "user", "content": problem.question}])
        # Prompt and answer must fit the context together: training reads them in one pass.
        room = max(1, min(self.rl.max_response_tokens, self.engine.context - len(prompt) - 1))
        sampling = SamplingConfig(temperature=self.rl.temperature, max_new_tokens=room,
                                  num_samples=self.rl.group_size, seed=seed)
        result = self.engine.generate_ids(prompt, sampling, stop_ids=[self.tokens.assistant_end])
        task = get_task(problem.task)
        rewards, answers = [], []
        for sample in result.samples:
            ended = sample.stop_id == self.tokens.assistant_end
            verdict = task.check(problem, self.engine.tokenizer.decode(sample.token_ids))
            rewards.append(reward(verdict) if ended else 0.0)
            # The stop token is part of the answer: ending (or ending wrongly, at eos) is learned too.
            stop = [sample.stop_id] if sample.stop_id is not None else []
            answers.append((sample.token_ids + stop, sample.finish_reason == "length"))
        advantages = group_advantages(rewards, divide_by_std=self.rl.advantage == "std")
        return [Sample(result.prompt_ids, ids, r, a, truncated)
                for (ids, truncated), r, a in zip(answers, rewards, advantages, strict=True)]

    def next_step(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]]:
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        rng = random.Random(seed)
        samples = [s for _ in range(self.rl.problems_per_step)
                   for s in self.practise(self._problem(rng), rng.randrange(2**62))]
        self.stats = {
            "reward_mean": sum(s.reward for s in samples) / len(samples),
            "response_length_mean": sum(len(s.response_ids) for s in samples) / len(samples),
            "truncated_frac": sum(s.truncated for s in samples) / len(samples)}
        normaliser = float(max(1, sum(len(s.response_ids) for s in samples)))
        chunks = [samples[i:i + self.batch_size] for i in range(0, len(samples), self.batch_size)]
        # The loop divides each micro-batch's loss by their number: scaled back here, so the step's
        # loss is the sum over all its response tokens over their count (token-level).
        return [(*samples_batch(chunk, self.pad_id), normaliser / len(chunks)) for chunk in chunks]

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def rl_loss(model: torch.nn.Module, batch: Sequence[Any]) -> torch.Tensor:
    x, y, adv, normaliser = batch
    return policy_gradient_loss(model, (x, y, adv), normaliser)


def rl_config(chat_run: str | Path, *, rl: dict[str, Any] | None = None,
              train: dict[str, Any] | None = None) -> RunConfig:
    """The config of a new RL run from the chat run `chat_run`, with `rl` and `train` changes."""
    config = RunFolder(chat_run).load_config()
    return config.for_finetune(stage="rl", parent=str(chat_run), train=RL_TRAIN, data=None,
                               rl=RLConfig(**(rl or {}))).with_overrides(train=train)


def rl(config: RunConfig, out_dir: str | Path, *, resume: bool = False, device: torch.device | None = None,
       show_progress: bool = True, log: Log = print) -> TrainResult:
    """Train `config.parent` (a chat model) by RL into `out_dir` (or continue it). One process."""
    run = RunFolder(out_dir)
    device = device or resolve_device("auto")
    settings = config.rl
    if settings is None or config.stage != "rl":
        raise GlassError(f"{run.path} is not an RL run: start one with `glassgpt rl --model CHAT_RUN --out NEW`")
    for name in settings.tasks:
        get_task(name)
    if resume:
        tokenizer = run.load_tokenizer()
        model = GPT(config.model).to(device)
    else:
        refuse_out_at_parent(config.parent, run)
        if run.has_trainer_state():
            start_folder(run, resume)  # refuses before anything is loaded
        chat = load_chat_model(config.parent, device)  # a base model gets a hint to run sft first
        tokenizer, model = chat.tokenizer, chat.model
        log(f"chat model: {config.parent} (stage {chat.config.stage}, step {chat.step:,})")
    start_folder(run, resume)
    seed_everything(config.train.seed)
    t = config.train
    engine = Engine(model, tokenizer, device)
    batches = PracticeBatches(engine, settings, t.batch_size, t.seed)
    optimizer, state = start_training(run, config, model, tokenizer, batches, resume, log)
    dtype = choose_dtype(t.dtype, device)
    log(f"RL on {', '.join(settings.tasks)}: {settings.problems_per_step} problems x {settings.group_size} "
        f"samples per step (temperature {settings.temperature:g}, at most {settings.max_response_tokens} tokens); "
        f"reward 1 = right and ended, else 0; advantage = reward - group mean"
        + (", over the group's std" if settings.advantage == "std" else ""))

    def heldout(is_last: bool) -> dict[str, float]:
        scores = evaluate_engine(engine, True, settings.tasks, settings.heldout_problems, seed=0,
                                 max_new_tokens=settings.max_response_tokens)
        found = {"heldout_accuracy": total(scores).accuracy, "heldout_length_mean": total(scores).mean_tokens}
        if len(scores) > 1:
            found.update({f"heldout_accuracy_{s.task}": s.accuracy for s in scores})
        return found

    def record(entry: dict[str, Any]) -> None:
        run.append_metrics({**entry, **{k: round(v, 4) for k, v in batches.stats.items()}})

    if not resume:  # the curves start from the chat model as it was
        start = heldout(False)
        run.append_metrics({"step": 0, **{k: round(v, 5) for k, v in start.items()}})
        log(f"step      0 | held-out accuracy {start['heldout_accuracy']:.1%} "
            f"(mean answer {start['heldout_length_mean']:.0f} tokens)")
    saver = checkpoint_saver(run, model, optimizer, batches, log=log)

    def save(state: TrainerState, interrupted: bool) -> None:
        saver(state, interrupted)
        from glassgpt.plots import plot_metric_panels

        plot_metric_panels(run.metrics_path, run.rl_curves_path, RL_PANELS, f"RL from {config.parent}")

    hooks = LoopHooks(evaluate=heldout, save=save, record=record,
                      describe_eval=lambda m: f"reward {batches.stats.get('reward_mean', 0):.2f} | "
                                              f"length {batches.stats.get('response_length_mean', 0):.0f} | "
                                              f"held-out accuracy {m['heldout_accuracy']:.1%}")
    result = run_loop(model, optimizer, batches.next_step, rl_loss, t, state, device=device, dtype=dtype,
                      hooks=hooks, show_progress=show_progress, log=log)
    log(f"saved {run.path} at step {state.step:,} ({state.elapsed_s:.0f} s of training)")
    return TrainResult(run.path, state.step, None, result.tokens_per_s, state.elapsed_s, model.num_parameters(),
                       result.mfu)
