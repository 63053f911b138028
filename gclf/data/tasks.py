"""Tasks: what a classifier is asked, as a label name and its classes (one definition each).

A corpus adapter (:mod:`gclf.data.layouts`) reads a corpus for one of the tasks it can label; every utterance
then carries the name of its class, and class k of a network's logits is ``task.classes[k]``. What a task
means for the pipeline is here too: whether its label belongs to the speaker (folds then stratify by it), and
the window a model reads (keywords and digits are short clips: one 1-s window each).
"""
from __future__ import annotations

from dataclasses import dataclass

from gclf.errors import GclfError

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


@dataclass(frozen=True)
class Task:
    name: str                        # what --task names
    classes: tuple[str, ...]         # logit k means classes[k]
    per_speaker: bool = True         # the label is the speaker's (sex, age): folds stratify by it
    window_seconds: float | None = None  # model window of MFCC models; None: the architecture's own (1.98 s)
    min_seconds: float = 0.5         # shorter clips are skipped (shorter than a window: padded)
    description: str = ""
    pad: str = "wrap"                # how a clip shorter than a window is padded (FeatureConfig.pad)

    def index(self, label: str) -> int:
        """Class number of a label name (a one-line error for a label outside the task)."""
        try:
            return self.classes.index(label)
        except ValueError:
            raise GclfError(f"label {label!r} is not a class of task {self.name!r} "
                            f"({', '.join(self.classes)})") from None


SEX = Task("sex", ("M", "F"), True, description="speaker sex; class 1 = female")
KEYWORD = Task("keyword", KEYWORDS + ("_unknown_", "_silence_"), False, 1.0, 0.5,
               "Speech Commands' 12 classes: ten words, other words, background noise")
# digits: FSDD's clips are trimmed to the word (0.14-2.3 s, mostly 0.3-0.6 s): centred between copies of their
# first and last frame rather than repeated. Leave-one-speaker-out, cnn1d float, seeds 0/1/2: 87.2 / 85.7 / 86.7 %
# against 84.5 / 85.2 / 83.4 % repeated (README, per-task table). Keywords keep wrap: their 1-s clips rarely need
# padding, and cnn1d with edge scored 86.9 % +- 2.5 against 87.6 % +- 1.4 (seed 0)
DIGIT = Task("digit", tuple(str(d) for d in range(10)), False, 1.0, 0.1, "spoken digit 0-9", pad="edge")
# Common Voice's decades, as the Common Voice age-classification projects grouped them (10-19 ... 60-69, 70+)
AGE = Task("age", ("teens", "twenties", "thirties", "fourties", "fifties", "sixties", "seventies+"), True,
           description="speaker's age group (Common Voice decades; seventies and older as one group)")

TASKS: dict[str, Task] = {t.name: t for t in (SEX, KEYWORD, DIGIT, AGE)}


def get_task(name: str | Task) -> Task:
    if isinstance(name, Task):
        return name
    if name not in TASKS:
        raise GclfError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    return TASKS[name]
