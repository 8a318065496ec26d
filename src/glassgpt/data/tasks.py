"""Built-in chat tasks: problems with checkable answers, made by the project from what it has offline.

Each `Task` knows how to make a random problem, how to answer it, and how to check an answer:

* `addition`, `subtraction`: multi-digit arithmetic in several natural phrasings;
* `letters`: how many times a letter occurs in a word (words from the corpus), the classic
  task that tokens make hard (a BPE model sees "strawberry" as one or two tokens, not letters);
* `source`: which book (and author) a passage of the built-in corpus is from;
* `quote`: continue a line of the corpus (famous ones and random ones);
* `character`: who a character of a Shakespeare play is (from the play's list of persons);
* `identity`: who glassgpt is and what it cannot do;
* `repeat`: say a text back exactly (a passage, words in random order, digits): copying, which
  the worked answers need and a base model trained on books alone cannot do.

The reasoning tasks (arithmetic, letters) answer in two styles, chosen at random by the data
(never by difficulty): *direct*, just the final line, and *worked*, the steps before it (each
number's digits by place, then the columns with carries and borrows; the word spelled out with a
running count). Either way the last line is the final answer in one fixed form, ``Answer: 936``,
and that line is all `check` reads.

`check` returns a `Verdict` (right / wrong / malformed: no final answer in the expected form);
`reward` turns it into the number RL maximises (1 for right, 0 otherwise).

Problems are split into train and held-out by a hash of the problem itself (its `key`: the
numbers, the word and letter, the passage; never the phrasing), so a held-out problem never
appears in training in any wording, and the split is the same on every machine and for every
seed. `problems(task, split, n, seed)` draws n distinct problems of one split, deterministically.
"""

from __future__ import annotations

import hashlib
import random
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from glassgpt.data.corpus import Document, builtin_documents
from glassgpt.errors import GlassError

SPLITS = ("train", "heldout")
HELDOUT_PERCENT = 10  # of all problems (by hash), never used for training
STYLES = ("direct", "worked")
ANSWER_PREFIX = "Answer:"
_ANSWER_LINE = re.compile(r"^Answer:\s*(\S.*?)\s*$")


class Verdict(str, Enum):
    RIGHT = "right"
    WRONG = "wrong"
    MALFORMED = "malformed"  # no answer in the expected form (RL's "format" failure)


def reward(verdict: Verdict) -> float:
    """The RL reward of an answer: 1 when right; 0 when wrong or malformed (no format bonus)."""
    return 1.0 if verdict is Verdict.RIGHT else 0.0


@dataclass(frozen=True)
class Problem:
    """One question of a task, with what is needed to answer and check it."""

    task: str
    key: str  # what the problem is, without its wording: the train/held-out split hashes it
    question: str  # the user's message
    answer: str  # the final answer (reasoning tasks: what follows "Answer:"; others: the reply)
    steps: tuple[str, ...] = ()  # the worked lines before the final answer (reasoning tasks)
    expected: str = ""  # what `check` looks for, when it is not `answer` itself


def split_of(key: str) -> str:
    """'heldout' for about HELDOUT_PERCENT% of keys, 'train' for the rest; fixed by the key's hash."""
    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return "heldout" if digest % 100 < HELDOUT_PERCENT else "train"


def final_answer(response: str) -> str | None:
    """The text after 'Answer:' on the response's last non-empty line, or None when it has none."""
    lines = [line.strip() for line in response.strip().splitlines() if line.strip()]
    match = _ANSWER_LINE.match(lines[-1]) if lines else None
    return match.group(1) if match else None


def _normalise(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


class Task(ABC):
    """A kind of problem: how to make one, answer it in each style, and check an answer."""

    name: str
    reasoning: bool = False  # has a worked style and a final "Answer:" line
    description: str = ""

    @abstractmethod
    def make(self, rng: random.Random) -> Problem:
        """One random problem (of either split)."""

    def respond(self, problem: Problem, style: str) -> str:
        """The assistant's reply in `style` ('direct' or 'worked'; tasks without steps have one)."""
        if not self.reasoning:
            return problem.answer
        final = f"{ANSWER_PREFIX} {problem.answer}"
        return "\n".join([*problem.steps, final]) if style == "worked" else final

    def check(self, problem: Problem, response: str) -> Verdict:
        """Right, wrong, or malformed. Reasoning tasks read only the final 'Answer: N' line."""
        found = final_answer(response)
        if found is None or not re.fullmatch(r"-?\d+", found.replace(",", "")):
            return Verdict.MALFORMED
        return Verdict.RIGHT if int(found.replace(",", "")) == int(problem.answer) else Verdict.WRONG


# ---------------------------------------------------------------------------------------- arithmetic

def _random_number(rng: random.Random, max_digits: int) -> int:
    digits = rng.randint(1, max_digits)
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)


#: Column names from the right; the worked answers name each digit's place so that a column's
#: line finds its digits by the name (attention matches it), not by counting digits from the end.
PLACES = ("ones", "tens", "hundreds", "thousands", "ten thousands", "hundred thousands")


def _by_place(*numbers: int) -> list[str]:
    """One line per number with its digits by place: '591: 5 hundreds, 9 tens, 1 ones'."""
    def line(n: int) -> str:
        digits = str(n)
        return f"{n}: " + ", ".join(f"{d} {PLACES[len(digits) - 1 - i]}" for i, d in enumerate(digits))
    return [line(n) for n in numbers]


def _columns(a: int, b: int) -> list[tuple[int, int]]:
    """The digits of a and b by place from the ones up, 0 where a number has no such place."""
    width = max(len(str(a)), len(str(b)))
    return [(a // 10**i % 10, b // 10**i % 10) for i in range(width)]


class Arithmetic(Task):
    """Two numbers of up to `max_digits` digits and one operation, phrased in several ways."""

    reasoning = True
    symbol: str
    PHRASINGS: tuple[str, ...]

    def __init__(self, max_digits: int = 4) -> None:
        if not 1 <= max_digits <= len(PLACES):
            raise GlassError(f"arithmetic problems have 1 to {len(PLACES)} digits (the places the worked answers "
                             f"name), got {max_digits}")
        self.max_digits = max_digits

    @staticmethod
    @abstractmethod
    def compute(a: int, b: int) -> int: ...

    @staticmethod
    @abstractmethod
    def steps(a: int, b: int) -> tuple[str, ...]: ...

    def make(self, rng: random.Random) -> Problem:
        a, b = _random_number(rng, self.max_digits), _random_number(rng, self.max_digits)
        if self.symbol == "-":  # no negative results
            a, b = max(a, b), min(a, b)
        question = rng.choice(self.PHRASINGS).format(a=a, b=b)
        return Problem(self.name, f"{a}{self.symbol}{b}", question, str(self.compute(a, b)), self.steps(a, b))


class Addition(Arithmetic):
    name = "addition"
    symbol = "+"
    description = "a + b, up to 4 digits each"
    PHRASINGS = ("What is {a} + {b}?", "What is {a} plus {b}?", "Add {a} and {b}.", "Calculate {a} + {b}.",
                 "How much is {a} plus {b}?", "What is the sum of {a} and {b}?", "{a} + {b} = ?",
                 "What do you get when you add {a} and {b}?")

    @staticmethod
    def compute(a: int, b: int) -> int:
        return a + b

    @staticmethod
    def steps(a: int, b: int) -> tuple[str, ...]:
        """Each number by place, then column addition from the right: each column's place, its
        two digits (0 where a number has none), its sum, the digit to write and the carry."""
        lines = [*_by_place(a, b), "Add the places from right to left:"]
        carry = 0
        for place, (x, y) in enumerate(_columns(a, b)):
            total = x + y + carry
            terms = f"{x} + {y}" + (f" + {carry}" if carry else "")
            carry, digit = divmod(total, 10)
            lines.append(f"{PLACES[place]}: {terms} = {total}: write {digit}" + (f", carry {carry}" if carry else ""))
        if carry:
            lines.append(f"carry {carry}: write {carry}")
        return tuple(lines)


class Subtraction(Arithmetic):
    name = "subtraction"
    symbol = "-"
    description = "a - b with a >= b, up to 4 digits"
    PHRASINGS = ("What is {a} - {b}?", "What is {a} minus {b}?", "Subtract {b} from {a}.", "Calculate {a} - {b}.",
                 "How much is {a} minus {b}?", "What is the difference between {a} and {b}?", "{a} - {b} = ?",
                 "What do you get when you take {b} away from {a}?")

    @staticmethod
    def compute(a: int, b: int) -> int:
        return a - b

    @staticmethod
    def steps(a: int, b: int) -> tuple[str, ...]:
        """Each number by place, then column subtraction from the right, borrowing 10 from the next
        column when needed; each column's line names its place and ends with its digit."""
        lines = [*_by_place(a, b), "Subtract the places from right to left:"]
        borrow = 0
        for place, (t, d) in enumerate(_columns(a, b)):
            terms = f"{t}" + (" - 1" if borrow else "") + f" - {d}"
            value = t - borrow - d
            if value < 0:
                value += 10
                lines.append(f"{PLACES[place]}: {terms}: borrow 10, {t + 10}" + (" - 1" if borrow else "")
                             + f" - {d} = {value}")
                borrow = 1
            else:
                lines.append(f"{PLACES[place]}: {terms} = {value}")
                borrow = 0
        return tuple(lines)


# ---------------------------------------------------------------------------------------- letters

#: Words people ask about, whether or not the corpus has them.
CLASSIC_WORDS = ("strawberry", "banana", "mississippi", "bookkeeper", "committee", "raspberry", "occurrence",
                 "balloon", "letter", "assessment")


@lru_cache(maxsize=1)
def _documents() -> tuple[Document, ...]:
    """The built-in corpus, decompressed once for all tasks."""
    return tuple(builtin_documents())


@lru_cache(maxsize=1)
def corpus_words() -> tuple[str, ...]:
    """Lower-case words of 3 to 12 letters seen at least 5 times in the built-in corpus, sorted."""
    counts: Counter[str] = Counter()
    for doc in _documents():
        counts.update(w.lower() for w in re.findall(r"\b[A-Za-z]{3,12}\b", doc.text))
    return tuple(sorted({w for w, c in counts.items() if c >= 5} | set(CLASSIC_WORDS)))


class Letters(Task):
    name = "letters"
    reasoning = True
    description = "how many times a letter occurs in a word"
    PHRASINGS = ("How many {l}'s are in {w}?", "How many times does the letter {l} appear in \"{w}\"?",
                 "Count the letter {l} in the word {w}.", "In the word {w}, how many {l}'s are there?",
                 "How many {l}'s does \"{w}\" have?")

    #: How often the answer is 0, 1, and 2 or more. Most letters occur once in a word, so letters
    #: drawn from the word made "Answer: 1" right 57% of the time, and RL learned to say nothing
    #: else (README); with these shares a constant answer is right at most 40% of the time.
    COUNT_SHARES = (0.25, 0.4, 0.35)

    def make(self, rng: random.Random) -> Problem:
        words = corpus_words()
        wanted = rng.choices((0, 1, 2), self.COUNT_SHARES)[0]
        while True:
            word = rng.choice(CLASSIC_WORDS) if rng.random() < 0.05 else rng.choice(words)
            if wanted == 0:  # a letter the word lacks
                letter = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c not in word])
                break
            fitting = sorted({c for c in word if (word.count(c) == 1) == (wanted == 1)})
            if fitting:
                letter = rng.choice(fitting)
                break
        question = rng.choice(self.PHRASINGS).format(l=letter, w=word)
        return Problem(self.name, f"{letter}@{word}", question, str(word.count(letter)), self.steps(word, letter))

    @staticmethod
    def steps(word: str, letter: str) -> tuple[str, ...]:
        """The word spelled out letter by letter, each match numbered as it is counted."""
        seen, spelled = 0, []
        for c in word:
            if c == letter:
                seen += 1
                spelled.append(f"{c} ({seen})")
            else:
                spelled.append(c)
        return (f"Spell {word} letter by letter, counting each {letter}:", ", ".join(spelled))


# ---------------------------------------------------------------------------------------- the books

@dataclass(frozen=True)
class Section:
    """A stretch of a built-in document that belongs to one work."""

    source: str  # the document: austen, kjv, mobydick, shakespeare
    title: str
    author: str
    text: str


#: Per document: the author, and a word a reply must name to get the source right.
AUTHORS = {"austen": ("Jane Austen", "austen"), "kjv": ("", "bible"), "mobydick": ("Herman Melville", "melville"),
           "shakespeare": ("William Shakespeare", "shakespeare")}
AUSTEN_NOVELS = ("SENSE AND SENSIBILITY", "PRIDE AND PREJUDICE", "MANSFIELD PARK", "EMMA", "NORTHANGER ABBEY",
                 "PERSUASION")
_SMALL_WORDS = {"and", "of", "the", "or", "a", "for", "in", "to"}


def _title_case(text: str) -> str:
    def word(i: int, w: str) -> str:
        if re.fullmatch(r"[ivx]+,?", w):  # Henry IV, Richard III
            return w.upper()
        return w if i and w in _SMALL_WORDS else w[:1].upper() + w[1:]

    return " ".join(word(i, w) for i, w in enumerate(text.strip(" .").lower().split()))


@lru_cache(maxsize=1)
def book_sections() -> tuple[Section, ...]:
    """The built-in corpus cut into works: Austen's six novels, Shakespeare's plays and poems,
    Moby Dick, the King James Bible."""
    sections = []
    for doc in _documents():
        author = AUTHORS[doc.name][0]
        if doc.name == "austen":
            starts = [(m.start(), m.group(1)) for title in AUSTEN_NOVELS
                      for m in [re.search(rf"(?mi)^({title})\s*$", doc.text)] if m]
        elif doc.name == "shakespeare":
            # A title may be glued to the end of the work before it ("...[Exeunt.]MACBETH").
            starts = [(m.start(1), re.search(r"[A-Z][A-Z0-9' ,;:\-]+$", m.group(1)).group().removeprefix("THE END"))
                      for m in re.finditer(r"(?m)^(.*[A-Z]{2}.*)\n\s*\nby William Shakespeare", doc.text)]
        else:
            starts = [(0, "Moby Dick" if doc.name == "mobydick" else "The King James Bible")]
        starts.sort()
        for (start, title), (end, _) in zip(starts, [*starts[1:], (len(doc.text), "")], strict=True):
            sections.append(Section(doc.name, _title_case(title), author, doc.text[start:end]))
    return tuple(sections)


def _work_name(section: Section) -> str:
    if section.source == "kjv":
        return "the King James Bible"
    return f"{section.title}, by {section.author}" if section.source != "mobydick" else "Moby Dick, by Herman Melville"


def _block_key(section: Section, position: int) -> str:
    """The split key of a passage: its 1,000-character block of the work, the same for every task
    (a held-out block is held out from the source and the quote tasks alike, so overlapping
    passages stay on one side)."""
    return f"{section.source}:{section.title}:{position // 1000}"


def _passage(rng: random.Random, text: str, words: int) -> tuple[int, str] | None:
    """A run of `words` words starting at a random sentence or line start (position, text)."""
    start = rng.randrange(len(text))
    match = re.compile(r"(?<=[.!?;\n] )[A-Z]|(?<=\n)[A-Z][a-z]").search(text, start)
    if match is None:
        return None
    tokens = text[match.start():match.start() + 40 * words].split()[:words]
    if len(tokens) < words or any(t.isupper() and len(t) > 3 for t in tokens):  # speakers' names, headings
        return None
    return match.start(), " ".join(tokens)


class Source(Task):
    name = "source"
    description = "which book of the built-in corpus a passage is from"
    PHRASINGS = ("Which book is this passage from? \"{p}\"", "Who wrote this: \"{p}\"?",
                 "Where does this text come from? \"{p}\"", "\"{p}\" Which work is that from?")

    def make(self, rng: random.Random) -> Problem:
        sections = book_sections()
        while True:
            # The four sources are drawn equally often (Shakespeare's many plays would swamp the rest).
            source = rng.choice(sorted(AUTHORS))
            section = rng.choice([s for s in sections if s.source == source])
            found = _passage(rng, section.text, rng.randint(12, 24))
            if found is not None:
                break
        position, passage = found
        answer = f"That passage is from {_work_name(section)}."
        return Problem(self.name, _block_key(section, position),
                       rng.choice(self.PHRASINGS).format(p=passage), answer, expected=source)

    def check(self, problem: Problem, response: str) -> Verdict:
        """Right when the reply names the right source (author, or the Bible) and no other."""
        text = _normalise(response)
        named = {source for source, (_, word) in AUTHORS.items() if word in text or
                 (source == "mobydick" and "moby dick" in text)}
        if not named:
            return Verdict.MALFORMED
        return Verdict.RIGHT if named == {problem.expected} else Verdict.WRONG


FAMOUS_LINES = ("It is a truth universally acknowledged", "Call me Ishmael.", "In the beginning God created",
                "To be, or not to be,", "Now is the winter of our discontent", "Friends, Romans, countrymen,",
                "The LORD is my shepherd;", "Shall I compare thee to a summer's day?", "A horse! a horse!",
                "Is this a dagger which I see before me,", "The quality of mercy is not strain'd;",
                "Double, double, toil and trouble;", "Vanity of vanities, saith the Preacher,",
                "Let there be light:", "O Romeo, Romeo!", "All the world's a stage,",
                "If music be the food of love,", "Out, damned spot!", "Love is not love")


class Quote(Task):
    name = "quote"
    description = "continue a line of the built-in books (famous and random ones)"
    PHRASINGS = ("Continue this line: \"{p}\"", "How does this go on? \"{p}\"", "Finish the quote: \"{p}\"",
                 "What comes next? \"{p}\"")
    CHECKED_WORDS = 3  # a reply is right when its first words are the text's next words

    def make(self, rng: random.Random) -> Problem:
        sections = book_sections()
        if rng.random() < 0.2:
            line = rng.choice(FAMOUS_LINES)
            section = next(s for s in sections if line in s.text)
            position = section.text.find(line)
            words = section.text[position:position + 400].split()
            cut = len(line.split())
        else:
            section = rng.choice(sections)
            while (found := _passage(rng, section.text, 20)) is None:
                section = rng.choice(sections)
            position, text = found
            words, cut = text.split(), rng.randint(5, 9)
        prompt, rest = " ".join(words[:cut]), " ".join(words[cut:cut + 10])
        return Problem(self.name, _block_key(section, position), rng.choice(self.PHRASINGS).format(p=prompt),
                       rest, expected=_normalise(rest))

    def check(self, problem: Problem, response: str) -> Verdict:
        said = _normalise(response).split()
        if not said:
            return Verdict.MALFORMED
        want = problem.expected.split()[:self.CHECKED_WORDS]
        return Verdict.RIGHT if said[:len(want)] == want else Verdict.WRONG


@lru_cache(maxsize=1)
def shakespeare_persons() -> tuple[tuple[str, str, str], ...]:
    """(play, character, description) from each play's list of persons ('BERTRAM, Count of Rousillon.')."""
    persons = []
    for section in book_sections():
        if section.source != "shakespeare":
            continue
        head = re.search(r"(PERSONS REPRESENTED\.|Dramatis Personae)\s*\n(.*?)\n\s*(SCENE|ACT)", section.text, re.S)
        if head is None:
            continue
        for line in head.group(2).splitlines():
            match = re.fullmatch(r"([A-Z][A-Z']+(?: [A-Z][A-Z']+){0,2}),\s+([^,].*?[a-z].*?)\.", line.strip())
            if match:
                persons.append((section.title, _title_case(match.group(1)), match.group(2).strip()))
    return tuple(persons)


class Character(Task):
    name = "character"
    description = "who a character of a Shakespeare play is"
    PHRASINGS = ("Who is {c} in {p}?", "In {p}, who is {c}?", "Tell me who {c} is in {p}.")

    def make(self, rng: random.Random) -> Problem:
        play, character, role = rng.choice(shakespeare_persons())
        answer = f"In {play}, {character} is {role[0].lower() + role[1:] if not role[:2].isupper() else role}."
        return Problem(self.name, f"{play}:{character}", rng.choice(self.PHRASINGS).format(c=character, p=play),
                       answer, expected=_normalise(role))

    def check(self, problem: Problem, response: str) -> Verdict:
        said = _normalise(response)
        if not said:
            return Verdict.MALFORMED
        return Verdict.RIGHT if problem.expected in said else Verdict.WRONG


# ---------------------------------------------------------------------------------------- repeating

class Repeat(Task):
    """Say a text back exactly: the copying that worked answers need (restating 347 and 589,
    spelling out "strawberry"), practised on its own. A small base model trained on books alone
    does not copy from its context (README, "Why"); this task practises it in the chat data
    (alone, in 600 SFT steps, it did not make such a base copy: README, "Teaching copying")."""

    name = "repeat"
    description = "say a text back exactly (a passage, a list of words, digits)"
    PHRASINGS = ("Repeat after me: {t}", "Say exactly this: \"{t}\"", "Please repeat: {t}",
                 "Copy this text: \"{t}\"", "Repeat this back to me: {t}")

    def make(self, rng: random.Random) -> Problem:
        kind = rng.random()
        if kind < 0.5:  # a stretch of a book
            section = rng.choice(book_sections())
            while (found := _passage(rng, section.text, rng.randint(4, 20))) is None:
                section = rng.choice(book_sections())
            text = found[1]
        elif kind < 0.8:  # words in no order a book would give: only copying gets them right
            text = " ".join(rng.choice(corpus_words()) for _ in range(rng.randint(3, 12)))
        else:
            text = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 16)))
        return Problem(self.name, text, rng.choice(self.PHRASINGS).format(t=text), text, expected=_normalise(text))

    def check(self, problem: Problem, response: str) -> Verdict:
        said = _normalise(response)
        if not said:
            return Verdict.MALFORMED
        return Verdict.RIGHT if said == problem.expected else Verdict.WRONG


# ---------------------------------------------------------------------------------------- identity

_WHO = ("I am glassgpt, a small language model trained from scratch on four public-domain books: "
        "Jane Austen's novels, the King James Bible, Moby Dick and Shakespeare. I am small enough to "
        "train and look inside on a laptop.")
_CANNOT = ("I can't do that: I am glassgpt, a small language model with no internet access, no clock "
           "and no memory of other conversations. I only know what I learned from my training text.")
_WRONG = ("Often not. I am glassgpt, a very small language model, so I make many mistakes, even "
          "in arithmetic; check anything important.")
#: (questions, reply, word the reply must contain)
IDENTITY = (
    (("Who are you?", "What are you?", "What is your name?", "Introduce yourself.", "Are you ChatGPT?",
      "Who made you?", "What kind of model are you?", "Tell me about yourself."), _WHO, "glassgpt"),
    (("What did you learn from?", "What were you trained on?", "Which books do you know?"), _WHO, "austen"),
    (("Can you browse the internet?", "What's the weather today?", "What is today's date?",
      "What time is it?", "Can you look something up online for me?", "Do you remember our last conversation?",
      "What is the latest news?", "Can you send an email for me?"), _CANNOT, "can't"),
    (("Are you always right?", "Can I trust your answers?", "Do you make mistakes?"), _WRONG, "mistakes"),
)


class Identity(Task):
    name = "identity"
    description = "who glassgpt is and what it cannot do"

    def make(self, rng: random.Random) -> Problem:
        questions, reply, word = rng.choice(IDENTITY)
        question = rng.choice(questions)
        return Problem(self.name, question, question, reply, expected=word)

    def check(self, problem: Problem, response: str) -> Verdict:
        said = response.lower()
        if not said.strip():
            return Verdict.MALFORMED
        return Verdict.RIGHT if problem.expected in said else Verdict.WRONG


# ---------------------------------------------------------------------------------------- the registry

TASKS: dict[str, Task] = {t.name: t for t in (Addition(), Subtraction(), Letters(), Source(), Quote(),
                                              Character(), Identity(), Repeat())}
#: How often each task appears in the built-in SFT data. Addition, the task RL practises by
#: default, has the largest share: RL can only sharpen a skill the chat model already has.
MIXTURE = {"addition": 0.45, "subtraction": 0.1, "letters": 0.1, "source": 0.08, "quote": 0.05,
           "character": 0.04, "identity": 0.08, "repeat": 0.1}


def get_task(name: str) -> Task:
    """The task called `name`, or a clear error listing the choices."""
    if name not in TASKS:
        raise GlassError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    return TASKS[name]


def draw(task: Task, split: str, rng: random.Random, seen: set[str] | None = None,
          max_tries: int = 2000) -> Problem | None:
    """A problem of `split` (whose key is not in `seen`, if given), or None when none turns up."""
    for _ in range(max_tries):
        problem = task.make(rng)
        if split_of(problem.key) == split and (seen is None or problem.key not in seen):
            if seen is not None:
                seen.add(problem.key)
            return problem
    return None


def problems(task: Task | str, split: str, n: int, seed: int = 0) -> list[Problem]:
    """`n` distinct problems of `task` from `split`, the same for the same seed (fewer when the task
    has fewer, e.g. the identity questions)."""
    task = get_task(task) if isinstance(task, str) else task
    if split not in SPLITS:
        raise GlassError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    rng = random.Random(f"{seed}:{task.name}:{split}")
    seen: set[str] = set()
    found = []
    while len(found) < n and (problem := draw(task, split, rng, seen)) is not None:
        found.append(problem)
    return found


def conversations(n: int, seed: int = 0, split: str = "train", multi_turn: float = 0.15,
                  mixture: dict[str, float] | None = None) -> Iterator[list[dict[str, str]]]:
    """`n` conversations of the built-in mixture from `split`: each a user question and the
    assistant's reply (reasoning tasks: direct or worked, at random), sometimes two such turns."""
    mixture = mixture or MIXTURE
    rng = random.Random(f"{seed}:conversations:{split}")
    names, weights = list(mixture), list(mixture.values())

    def turn() -> list[dict[str, str]]:
        name = rng.choices(names, weights)[0]
        problem = draw(TASKS[name], split, rng)  # repeats allowed: the small tasks have few problems
        if problem is None:
            raise GlassError(f"task {name} made no {split} problem")
        return [{"role": "user", "content": problem.question},
                {"role": "assistant", "content": TASKS[name].respond(problem, rng.choice(STYLES))}]

    for _ in range(n):
        messages = turn()
        if rng.random() < multi_turn:
            messages += turn()
        yield messages
