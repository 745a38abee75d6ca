"""Project-written sentence generators: everyday requests, numbers, dates, times, names, replies.

Trivia and quotations alone would teach the models neither how people talk to an assistant nor
how spoken numbers, dates and times sound, so these fill that gap. Every number is written as the
words a voice says ("a quarter past nine", "March third"), and every generator is deterministic
given its `random.Random`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

from freeze_omni.data.normalize import number_to_words, ordinal_words, year_words

TEXTS_DIR = Path(__file__).resolve().parent / "texts"
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = (
    "January February March April May June July August September October November December"
).split()
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
REPLY_KINDS = ("filler", "reply")


@cache
def word_list(name: str) -> tuple[str, ...]:
    """Lines of `texts/<name>.txt`, without comments and blank lines."""
    lines = (TEXTS_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


# --- spoken numbers, dates and times ----------------------------------------------------------


def spoken_date(rng: random.Random) -> str:
    month = rng.randrange(12)
    day = ordinal_words(rng.randint(1, _MONTH_DAYS[month]))
    return rng.choice([f"{MONTHS[month]} {day}", f"the {day} of {MONTHS[month]}"])


def spoken_time(rng: random.Random) -> str:
    hour = rng.randint(1, 12)
    words = number_to_words(hour)
    minute = rng.choice([0, 0, 15, 30, 45, rng.randrange(1, 60)])
    if minute == 0:
        base = rng.choice([f"{words} o'clock", words])
    elif minute == 15:
        base = rng.choice([f"a quarter past {words}", f"{words} fifteen"])
    elif minute == 30:
        base = rng.choice([f"half past {words}", f"{words} thirty"])
    elif minute == 45:
        base = rng.choice([f"a quarter to {number_to_words(hour % 12 + 1)}", f"{words} forty five"])
    else:
        base = f"{words} oh {number_to_words(minute)}" if minute < 10 else f"{words} {number_to_words(minute)}"
    return base + rng.choice(["", "", " in the morning", " in the afternoon", " in the evening"])


def spoken_number(rng: random.Random) -> str:
    """Mostly small numbers, sometimes large ones, as people meet them."""
    magnitude = rng.choice([10, 100, 100, 1000, 100_000, 10_000_000])
    return number_to_words(rng.randrange(magnitude))


def spoken_digits(rng: random.Random, count: int) -> str:
    """Digit by digit, as phone numbers and codes are read ("five five five")."""
    return " ".join(number_to_words(rng.randrange(10)) for _ in range(count))


SLOTS: dict[str, Callable[[random.Random], str]] = {
    "city": lambda rng: rng.choice(word_list("cities")),
    "food": lambda rng: rng.choice(word_list("foods")),
    "task": lambda rng: rng.choice(word_list("tasks")),
    "topic": lambda rng: rng.choice(word_list("topics")),
    "thing": lambda rng: rng.choice(word_list("things")),
    "place": lambda rng: rng.choice(word_list("places")),
    "animal": lambda rng: rng.choice(word_list("animals")),
    "name": lambda rng: rng.choice(word_list("first_names")),
    "fullname": lambda rng: f"{rng.choice(word_list('first_names'))} {rng.choice(word_list('last_names'))}",
    "number": spoken_number,
    "few": lambda rng: number_to_words(rng.randint(2, 12)),
    "minutes": lambda rng: number_to_words(rng.choice([5, 10, 15, 20, 25, 30, 40, 45, 90, rng.randint(2, 59)])),
    "weekday": lambda rng: rng.choice(WEEKDAYS),
    "month": lambda rng: rng.choice(MONTHS),
    "date": spoken_date,
    "time": spoken_time,
    "year": lambda rng: year_words(rng.randint(1900, 2030)),
}


def fill(template: str, rng: random.Random) -> str:
    """Replace each `{slot}` independently (two `{city}` slots may differ)."""
    return re.sub(r"\{(\w+)\}", lambda m: SLOTS[m.group(1)](rng), template)


def _distinct(make: Callable[[], str], count: int) -> list[str]:
    """Up to `count` distinct outputs of `make`; stops early when it keeps repeating itself."""
    seen: dict[str, None] = {}
    misses = 0
    while len(seen) < count and misses < 20 * count + 100:
        text = make()
        if text in seen:
            misses += 1
        seen.setdefault(text)
    return list(seen)


def from_templates(name: str, rng: random.Random, count: int) -> list[str]:
    """`count` distinct sentences from the templates in `texts/<name>.txt`."""
    templates = word_list(name)
    return _distinct(lambda: fill(rng.choice(templates), rng), count)


_NUMBER_TEMPLATES = (
    "The answer is {n}.", "That will be {n} dollars, please.", "I counted {n} of them.",
    "Is it {n} or {m}?", "Write down the number {n}.", "The population is about {n}.",
    "Add {n} and {m}.", "Subtract {m} from {n}.", "My phone number is {d7}.",
    "The code is {d4}.", "Please transfer {n} dollars to my savings account.",
    "What is {n} minus {m}?", "The temperature dropped to {small} degrees last night.",
    "We drove {n} miles today.", "The flight number is {d3}.",
)


def number_sentences(rng: random.Random, count: int) -> list[str]:
    def make() -> str:
        return rng.choice(_NUMBER_TEMPLATES).format(
            n=spoken_number(rng), m=spoken_number(rng), small=number_to_words(rng.randint(1, 40)),
            d3=spoken_digits(rng, 3), d4=spoken_digits(rng, 4),
            d7=spoken_digits(rng, 3) + ", " + spoken_digits(rng, 4),
        )

    return _distinct(make, count)


_DATE_TEMPLATES = (
    "Today is {weekday}, {date}.", "The deadline is {date}.", "School starts on {date}.",
    "Is the party on {date} or {date2}?", "What day of the week was {date}, {year}?",
    "I'll be on holiday from {date} to {date2}.", "The concert was on {date}, {year}.",
    "Can we postpone it until {date}?", "The shop reopens on {weekday}.",
)


def date_sentences(rng: random.Random, count: int) -> list[str]:
    def make() -> str:
        return rng.choice(_DATE_TEMPLATES).format(
            weekday=rng.choice(WEEKDAYS), date=spoken_date(rng), date2=spoken_date(rng),
            year=year_words(rng.randint(1850, 2030)),
        )

    return _distinct(make, count)


_TIME_TEMPLATES = (
    "Wake me up at {t}.", "The bus comes at {t}.", "It's {t} already?", "Lunch is at {t}.",
    "The movie starts at {t}.", "Can we meet at {t} instead?", "I'll call you back at {t}.",
    "The store closes at {t}.", "Set an alarm for {t}.", "Was the meeting at {t} or {t2}?",
)


def time_sentences(rng: random.Random, count: int) -> list[str]:
    return _distinct(
        lambda: rng.choice(_TIME_TEMPLATES).format(t=spoken_time(rng), t2=spoken_time(rng)), count
    )


_NAME_TEMPLATES = (
    "My name is {full}.", "This is {first} speaking.", "Please call {full}.",
    "Can you send a message to {first}?", "Hi, I'm {first}.", "Is {full} here yet?",
    "Tell {first} I'll be late.", "{first} and {first2} are on their way.",
    "I'd like to speak to {full}, please.", "Have you met {first} {last} before?",
    "Who is {full}?", "Add {full} to my contacts.",
)


def name_sentences(rng: random.Random, count: int) -> list[str]:
    def make() -> str:
        first, first2 = rng.choice(word_list("first_names")), rng.choice(word_list("first_names"))
        last = rng.choice(word_list("last_names"))
        return rng.choice(_NAME_TEMPLATES).format(first=first, first2=first2, last=last, full=f"{first} {last}")

    return _distinct(make, count)


def replies() -> list[tuple[str, str]]:
    """(text, kind) for every short reply and filler in `texts/replies.txt`."""
    pairs = []
    for line in word_list("replies"):
        kind, _, text = line.partition(":")
        if kind not in REPLY_KINDS:
            raise ValueError(f"replies.txt: unknown kind {kind!r} in {line!r}")
        pairs.append((text.strip(), kind))
    return pairs
