"""Text sources, normalisation and the split plan (no audio is made here)."""

from collections import Counter

import pytest

from freeze_omni.data import CorpusError
from freeze_omni.data.fortunes import FORTUNES_DIR, MAX_WORDS, MIN_WORDS, fortune_sentences
from freeze_omni.data.normalize import normalize_text, number_to_words, ordinal_words, year_words
from freeze_omni.data.plan import plan_corpus, text_split
from freeze_omni.data.quiz import QUIZ_DIR, expand_field, quiz_pairs, split_fields
from freeze_omni.data.texts import KINDS, TextItem, default_texts, read_text_files, text_key
from freeze_omni.data.voices import VOICES, select_voices

needs_bsdgames = pytest.mark.skipif(not QUIZ_DIR.is_dir(), reason="Debian bsdgames not installed")
needs_fortunes = pytest.mark.skipif(not FORTUNES_DIR.is_dir(), reason="Debian fortunes not installed")


@pytest.fixture(scope="module")
def texts():
    return default_texts(seed=0)


def test_numbers_are_written_as_spoken_words():
    assert number_to_words(0) == "zero"
    assert number_to_words(342) == "three hundred forty two"
    assert number_to_words(1_000_015) == "one million fifteen"
    assert ordinal_words(21) == "twenty first" and ordinal_words(12) == "twelfth" and ordinal_words(40) == "fortieth"
    assert year_words(1984) == "nineteen eighty four"
    assert year_words(1905) == "nineteen oh five" and year_words(2007) == "two thousand seven"
    assert normalize_text("In 1984 I paid $1,250 for 2.5% of the 3rd shop") == (
        "In nineteen eighty four I paid one thousand two hundred fifty dollars for "
        "two point five percent of the third shop."
    )


def test_normalisation_cleans_or_rejects():
    assert normalize_text("  \u201cwell\u201d -- okay\u2026 ") == "Well, okay."
    assert normalize_text("Mr. Smith & Dr. Jones!") == "Mister Smith and Doctor Jones!"
    for unusable in ("see http://example.com", "a + b = c", "x_y", "#tag", "", "...", "1/2"):
        assert normalize_text(unusable) is None, unusable


def test_quiz_field_syntax_expands_every_spelling():
    assert expand_field("{G{eorge} }Washington") == ["George Washington", "G Washington", "Washington"]
    assert expand_field("colt|foal") == ["colt", "foal"]
    assert expand_field("Ed[w[ard|]|] [VII|7]")[0] == "Edward VII"
    assert split_fields(r"To be{,} or not to be{\:}:that") == [r"To be{,} or not to be{\:}", "that"]


@needs_bsdgames
def test_quiz_pairs_are_spoken_questions_with_answers():
    pairs = quiz_pairs()
    assert len(pairs) > 1500
    assert len({p.category for p in pairs}) >= 20
    assert all(p.question.endswith("?") and p.answers for p in pairs)
    capitals = {p.question: p.answers for p in pairs if p.category == "europe"}
    assert any("Paris" in answers for answers in capitals.values())
    assert sum(normalize_text(p.question) is not None for p in pairs) > 0.99 * len(pairs)


@needs_fortunes
def test_fortunes_are_clean_single_sentences():
    sentences = fortune_sentences()
    assert len(sentences) > 5000
    for sentence in sentences:
        assert MIN_WORDS <= len(sentence.split()) <= MAX_WORDS
        assert normalize_text(sentence) == sentence  # already in spoken form
        assert sentence[-1] in ".?!" and ". " not in sentence


def test_fortunes_never_read_the_offensive_folder(tmp_path):
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "rude").write_text("This rude sentence must stay out.\n%\n")
    (tmp_path / "nice").write_text("A kind word is worth a lot.\n%\nQ: What?\nA: That.\n%\n")
    (tmp_path / "nice.dat").write_bytes(b"\x00\x01")
    assert fortune_sentences(tmp_path) == ["A kind word is worth a lot."]


@needs_bsdgames
@needs_fortunes
def test_default_texts_are_many_distinct_deterministic_and_varied(texts):
    assert len(texts) >= 5000
    assert len({text_key(t.text) for t in texts}) == len(texts)
    assert texts == default_texts(seed=0)
    assert texts != default_texts(seed=1)
    kinds = Counter(t.kind for t in texts)
    assert set(kinds) == set(KINDS) and kinds["filler"] >= 10
    sources = Counter(t.source.split(":")[0] for t in texts)
    assert {"quiz", "fortunes", "questions", "numbers", "dates", "times", "names", "replies"} <= set(sources)
    assert all(normalize_text(t.text) == t.text for t in texts)
    assert not any(ch.isdigit() for t in texts for ch in t.text)


def test_sentence_splits_are_stable_and_sized():
    sample = [f"Sentence number {number_to_words(i)} is here." for i in range(4000)]
    splits = Counter(text_split(s) for s in sample)
    assert 0.035 < splits["test"] / len(sample) < 0.065
    assert 0.035 < splits["dev"] / len(sample) < 0.065
    assert text_split("Okay.") == text_split("okay?")  # same words, same split


def test_nothing_of_test_reaches_training(texts):
    plan = plan_corpus(texts, VOICES, hours=11.0, seed=0)
    by_split = {s: [u for u in plan if u.split == s] for s in ("train", "dev", "test")}
    keys = {s: {text_key(u.item.text) for u in us} for s, us in by_split.items()}
    assert not keys["test"] & keys["train"] and not keys["test"] & keys["dev"] and not keys["dev"] & keys["train"]
    held_out = {v.id for v in VOICES if v.held_out}
    assert held_out and {u.voice.id for u in by_split["test"]} >= held_out
    assert not held_out & {u.voice.id for u in by_split["train"] + by_split["dev"]}
    # every test sentence is heard from a held-out voice and from a training voice
    test_voices = {}
    for u in by_split["test"]:
        test_voices.setdefault(u.item.text, set()).add(u.voice.held_out)
    assert all(kinds == {True, False} for kinds in test_voices.values())
    assert len({u.id for u in plan}) == len(plan)


def test_more_hours_only_add_utterances(texts):
    small = plan_corpus(texts, VOICES, hours=6.0, seed=0)
    large = plan_corpus(texts, VOICES, hours=12.0, seed=0)
    assert {u.id for u in small} < {u.id for u in large}
    assert [u.id for u in small] == [u.id for u in plan_corpus(texts, VOICES, hours=6.0, seed=0)]


def test_voice_selection():
    assert [v.id for v in select_voices(["piper-joe"])] == ["piper-joe"]
    assert {v.engine for v in select_voices(["espeak"])} == {"espeak"}
    assert len({v.id for v in VOICES}) == len(VOICES)
    with pytest.raises(CorpusError, match="unknown voice 'nobody'"):
        select_voices(["nobody"])
    with pytest.raises(CorpusError, match="no training voice"):
        plan_corpus([TextItem("Hello there.", "statement", "test")], select_voices(["espeak-en-us+f4"]), 1.0)


def test_text_files_are_normalised_and_checked(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("I paid 3 dollars.\n\nWhat time is it?\nwhat time is it\n@@@\n")
    items = read_text_files([good])
    assert [(i.text, i.kind) for i in items] == [("I paid three dollars.", "statement"), ("What time is it?", "question")]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(CorpusError, match="empty"):
        read_text_files([empty])
    with pytest.raises(CorpusError, match="no such text file"):
        read_text_files([tmp_path / "missing.txt"])
    symbols = tmp_path / "symbols.txt"
    symbols.write_text("$$$ ###\n")
    with pytest.raises(CorpusError, match="no line is speakable"):
        read_text_files([symbols])
