"""From a text model to a reasoning chat model in one call: SFT, then RL, then a report.

`glassgpt pipeline` is exactly `glassgpt sft --out OUT/sft` followed by `glassgpt rl --model
OUT/sft --out OUT/rl` with their own defaults (so those two commands reproduce it), then one
measurement of all three models on the same held-out problems of every built-in task: the base
model (few-shot prompt), the chat-tuned model and the RL model (chat template). `OUT/report.md`
holds the accuracy table, the SFT loss curve and the RL curves, how RL changed the answers
(reward, length, the share of worked answers) and a few answers of each model side by side.

An interrupted pipeline continues with `resume=True`: a finished stage is kept, an unfinished
one resumes from its last checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from glassgpt.chat_eval import Answer, TaskScore, evaluate_chat, total
from glassgpt.errors import GlassError
from glassgpt.runs import RunFolder, load_run
from glassgpt.runtime import Log
from glassgpt.train.rl import rl, rl_config
from glassgpt.train.sft import sft, sft_config

SFT_DIR, RL_DIR = "sft", "rl"  # the stages' run folders inside the pipeline's folder
EVAL_PROBLEMS = 30  # held-out problems per task in the report's table
SHOWN_ANSWERS = 3  # answers per RL task shown side by side in the report


@dataclass(frozen=True)
class ModelScores:
    """One model's held-out answers, task by task."""

    label: str
    path: Path
    scores: tuple[TaskScore, ...]

    def of(self, task: str) -> TaskScore:
        return next(s for s in self.scores if s.task == task)


@dataclass(frozen=True)
class PipelineResult:
    sft_dir: Path
    rl_dir: Path
    report_path: Path
    models: tuple[ModelScores, ...]  # base, SFT, RL
    rl_tasks: tuple[str, ...]
    seconds: dict[str, float]  # wall-clock of each part: sft, rl, eval


def stage_progress(folder: RunFolder) -> tuple[int, int] | None:
    """(saved step, planned steps) of a stage's run folder, or None when it has not started."""
    if not folder.has_trainer_state():
        return None
    return folder.load_trainer_state().state.step, folder.load_config().train.max_steps


def run_pipeline(base: str | Path, out_dir: str | Path, *, resume: bool = False, problems: int = EVAL_PROBLEMS,
                 sft_train: dict[str, Any] | None = None, rl_settings: dict[str, Any] | None = None,
                 rl_train: dict[str, Any] | None = None, device: torch.device | None = None,
                 show_progress: bool = True, log: Log = print) -> PipelineResult:
    """SFT `base` into `out_dir/sft`, RL that into `out_dir/rl`, measure all three, write the report.

    `sft_train`, `rl_settings` and `rl_train` change the stages' recipes (as `TrainConfig` /
    `RLConfig` fields; the defaults are `glassgpt sft`'s and `glassgpt rl`'s)."""
    out = Path(out_dir)
    sft_run, rl_run = RunFolder(out / SFT_DIR), RunFolder(out / RL_DIR)
    if not resume and (sft_run.is_run() or rl_run.is_run()):
        raise GlassError(f"{out} already holds a pipeline: pass --resume to continue it, or choose a new --out")
    if resume and not sft_run.is_run():
        raise GlassError(f"{out} holds no pipeline to resume: run without --resume")
    seconds: dict[str, float] = {}

    def stage(name: str, folder: RunFolder, start: Any, train: Any) -> None:
        progress = stage_progress(folder)
        begun = time.perf_counter()
        if progress is None:
            log(f"== {name}: new run in {folder.path}")
            train(start(), folder.path, resume=False)
        elif progress[0] < progress[1]:
            log(f"== {name}: resuming {folder.path} at step {progress[0]:,} of {progress[1]:,}")
            train(folder.load_config().for_resume(), folder.path, resume=True)
        else:
            log(f"== {name}: {folder.path} is finished ({progress[0]:,} steps), kept")
        seconds[name] = time.perf_counter() - begun

    def run_stage(train_fn: Any) -> Any:
        return lambda config, path, resume: train_fn(config, path, resume=resume, device=device,
                                                     show_progress=show_progress, log=log)

    stage("sft", sft_run, lambda: sft_config(base, train=sft_train), run_stage(sft))
    stage("rl", rl_run, lambda: rl_config(sft_run.path, rl=rl_settings, train=rl_train), run_stage(rl))

    begun = time.perf_counter()
    models = []
    for label, path in (("base", Path(base)), ("SFT", sft_run.path), ("RL", rl_run.path)):
        log(f"== measuring the {label} model ({path}) on {problems} held-out problems per task")
        loaded = load_run(path, device or "cpu")
        models.append(ModelScores(label, path, tuple(evaluate_chat(loaded, n=problems, seed=0))))
    seconds["eval"] = time.perf_counter() - begun

    rl_tasks = rl_run.load_config().rl.tasks  # type: ignore[union-attr]  # an rl run always has them
    report = RunFolder(out).write_report(pipeline_report(models, rl_tasks, sft_run, rl_run, problems, seconds))
    return PipelineResult(sft_run.path, rl_run.path, report, tuple(models), tuple(rl_tasks), seconds)


def worked_share(answers: Sequence[Answer]) -> float:
    """The share of answers that write steps before their final line (more than one line)."""
    return sum("\n" in a.text.strip() for a in answers) / max(1, len(answers))


def accuracy_table(models: Sequence[ModelScores], rl_tasks: Sequence[str]) -> list[str]:
    """Markdown rows: accuracy (and mean answer tokens) of each model on each task and overall."""
    header = "| task | problems | " + " | ".join(f"{m.label} accuracy" for m in models) + " | " \
        + " | ".join(f"{m.label} tokens" for m in models) + " |"
    lines = [header, "|---|---|" + "---|" * (2 * len(models))]
    tasks = [s.task for s in models[0].scores]
    groups: list[tuple[str, list[TaskScore]]] = [(t, [m.of(t) for m in models]) for t in tasks]
    practised = [t for t in tasks if t in rl_tasks]
    if practised:
        groups.append(("RL's tasks", [total([m.of(t) for t in practised]) for m in models]))
    groups.append(("all", [total(m.scores) for m in models]))
    for name, scores in groups:
        label = f"**{name}**" if name in ("all", "RL's tasks") else (f"{name} (RL)" if name in rl_tasks else name)
        lines.append(f"| {label} | {len(scores[0].answers)} | "
                     + " | ".join(f"{s.accuracy:.1%}" for s in scores) + " | "
                     + " | ".join(f"{s.mean_tokens:.1f}" for s in scores) + " |")
    return lines


def _metric_means(records: Sequence[dict], key: str, first: bool, n: int = 10) -> float | None:
    values = [r[key] for r in records if key in r]
    part = values[:n] if first else values[-n:]
    return sum(part) / len(part) if part else None


def training_minutes(run: RunFolder) -> float:
    """Minutes of training the run's metrics record (its own clock: right also for a stage that
    was finished earlier and kept by --resume)."""
    return max((r["elapsed_s"] for r in run.read_metrics() if "elapsed_s" in r), default=0.0) / 60


def pipeline_report(models: Sequence[ModelScores], rl_tasks: Sequence[str], sft_run: RunFolder, rl_run: RunFolder,
                    problems: int, seconds: dict[str, float]) -> str:
    """report.md: what was run, the accuracy table, the curves, and answers side by side."""
    base, tuned, practised = models[0], models[1], models[-1]
    sft_config, rl_cfg = sft_run.load_config(), rl_run.load_config()
    rl_settings = rl_cfg.rl
    assert rl_settings is not None
    records = rl_run.read_metrics()
    lines = [
        "# glassgpt pipeline report: base model -> SFT -> RL",
        "",
        f"- base model: `{base.path}`",
        f"- SFT: `glassgpt sft --model {base.path} --out {sft_run.path}`: {sft_config.train.max_steps} steps of "
        f"{sft_config.train.batch_size} packed conversations, AdamW lr {sft_config.train.lr:g} "
        f"({training_minutes(sft_run):.1f} min of training)",
        f"- RL: `glassgpt rl --model {sft_run.path} --out {rl_run.path}`: {rl_cfg.train.max_steps} steps of "
        f"{rl_settings.problems_per_step} problems x {rl_settings.group_size} samples on "
        f"{', '.join(rl_settings.tasks)}; reward 1 = right and ended, else 0; AdamW lr {rl_cfg.train.lr:g} "
        f"({training_minutes(rl_run):.1f} min of training)",
        f"- measured: greedy answers to {problems} held-out problems per task (fewer where a task has fewer), "
        f"never trained on; the base model gets a 3-shot prompt, the others the chat template "
        f"({seconds.get('eval', 0) / 60:.1f} min)",
        "",
        "## Held-out accuracy",
        "",
        *accuracy_table(models, rl_tasks),
        "",
    ]
    practised_answers = [a for t in rl_tasks for a in practised.of(t).answers]
    tuned_answers = [a for t in rl_tasks for a in tuned.of(t).answers]
    change = total([practised.of(t) for t in rl_tasks]).accuracy - total([tuned.of(t) for t in rl_tasks]).accuracy
    lines += [
        f"On RL's tasks, RL changed held-out accuracy by **{change * 100:+.1f} points** "
        f"({total([tuned.of(t) for t in rl_tasks]).accuracy:.1%} -> "
        f"{total([practised.of(t) for t in rl_tasks]).accuracy:.1%}); the greedy answers went from "
        f"{total([tuned.of(t) for t in rl_tasks]).mean_tokens:.1f} to "
        f"{total([practised.of(t) for t in rl_tasks]).mean_tokens:.1f} tokens on average, and "
        f"{worked_share(tuned_answers):.0%} -> {worked_share(practised_answers):.0%} of them write their steps.",
        "",
    ]
    start_reward, end_reward = _metric_means(records, "reward_mean", True), _metric_means(records, "reward_mean", False)
    start_len = _metric_means(records, "response_length_mean", True)
    end_len = _metric_means(records, "response_length_mean", False)
    if None not in (start_reward, end_reward, start_len, end_len):
        lines += [f"During RL (practice samples, mean of the first and of the last 10 steps): reward "
                  f"{start_reward:.2f} -> {end_reward:.2f}, answer length {start_len:.1f} -> {end_len:.1f} tokens.", ""]
    lines += [
        "## Curves",
        "",
        f"![SFT loss]({SFT_DIR}/{RunFolder.LOSS_CURVE})",
        "",
        f"![RL curves]({RL_DIR}/{RunFolder.RL_CURVES})",
        "",
        "## Answers side by side",
        "",
    ]
    for task in rl_tasks:
        for i in range(min(SHOWN_ANSWERS, len(base.of(task).answers))):
            problem = base.of(task).answers[i].problem
            lines.append(f"**{problem.question}** (right answer: {problem.answer})")
            lines.append("")
            for model in models:
                a = model.of(task).answers[i]
                lines += [f"- {model.label} ({a.verdict.value}, {a.num_tokens} tokens):", "", "  ```text",
                          *("  " + line for line in (a.text or "(nothing)").splitlines()), "  ```"]
            lines.append("")
    return "\n".join(lines) + "\n"
