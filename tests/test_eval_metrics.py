import pytest

from freeze_omni.eval.metrics import error_rates, normalize, utterance_errors


@pytest.mark.parametrize(("reference", "hypothesis", "s", "d", "i"), [
    ("the cat sat on the mat", "the cat sat on a mat", 1, 0, 0),
    ("the cat sat on the mat", "the cat sat on the red mat", 0, 0, 1),
    ("the cat sat on the mat", "the cat on the mat", 0, 1, 0),
    ("the cat sat on the mat", "a dog sat the mat today", 2, 1, 1),
])
def test_word_edits_by_hand(reference, hypothesis, s, d, i):
    u = utterance_errors(reference, hypothesis)
    assert (u.substitutions, u.deletions, u.insertions) == (s, d, i)
    assert u.words == 6
    assert u.wer == pytest.approx((s + d + i) / 6)


def test_character_edits_by_hand():
    u = utterance_errors("cat", "cut")
    assert (u.chars, u.char_edits, u.cer) == (3, 1, pytest.approx(1 / 3))
    # Spaces are characters too: "a b" -> "ab" is one deletion out of three.
    assert utterance_errors("a b", "ab").cer == pytest.approx(1 / 3)


def test_corpus_rates_weigh_by_length_not_by_utterance():
    long = "we walked along the river until the sun went down"
    rates = error_rates([long, "hello there"], [long, "goodbye"])
    # Utterance rates are 0.0 and 1.0 (mean 0.5); the corpus has 2 edits in 12 words.
    assert [u.wer for u in rates.utterances] == [0.0, 1.0]
    assert rates.wer == pytest.approx(2 / 12)
    assert (rates.n, rates.words, rates.substitutions, rates.deletions) == (2, 12, 1, 1)


@pytest.mark.parametrize(("a", "b"), [
    ("It's 23", "it is twenty-three"),
    ("twenty three", "23"),
    ("It's twenty three degrees.", "it is 23 degrees"),
    ("Mr. Smith's favourite colour", "mister smith's favorite color"),
    ("I can't go", "I cannot go"),
    ("one thousand apples", "1,000 apples"),
    ("a hundred and five", "105"),
    ("Okay, fine.", "ok fine"),
    ("nineteen eighty four", "1984"),
    ("HELLO,   World!", "hello world"),
    ("May twenty ninth", "May 29th"),
    ("at two fifteen", "at 2:15"),
    ("at ten forty five", "at 10.45"),
    ("The deadline is August sixth.", "The deadline is August 6."),
    ("three nine one, five zero zero four", "391-5004"),
])
def test_normalisation_makes_equivalent_texts_equal(a, b):
    assert normalize(a) == normalize(b)
    assert error_rates([a], [b]).wer == 0.0
    assert error_rates([b], [a]).wer == 0.0


def test_normalisation_keeps_real_differences():
    assert normalize("twenty three") != normalize("thirty two")
    assert normalize("May twenty ninth") != normalize("May 28th")
    assert normalize("at two fifteen") != normalize("at 2:50")
    assert normalize("three nine one") != normalize("3 9 2")
    assert error_rates(["it is twenty three degrees"], ["it is 32 degrees"]).wer == pytest.approx(1 / 4)
    assert error_rates(["the cat"], ["the cat"], normalise=False).wer == 0.0
    assert error_rates(["The cat."], ["the cat"], normalise=False).wer == 1.0


def test_empty_references_and_hypotheses():
    assert error_rates([""], [""]).wer == 0.0
    # Nothing to get right: every inserted word is one error (rate floor of one word).
    empty_ref = error_rates([""], ["hello there"])
    assert (empty_ref.wer, empty_ref.insertions, empty_ref.words) == (2.0, 2, 0)
    assert empty_ref.cer == len("hello there")
    # A filler-only reference normalises to nothing, like an empty one.
    assert error_rates(["Hmm."], [""]).wer == 0.0
    # Saying nothing deletes every reference word.
    silent = error_rates(["hello there"], [""])
    assert (silent.wer, silent.cer, silent.deletions) == (1.0, 1.0, 2)
    # In a corpus, insertions against an empty reference still count against the total words.
    mixed = error_rates(["hello there", ""], ["hello there", "extra"])
    assert mixed.wer == pytest.approx(1 / 2)
    nothing = error_rates([], [])
    assert (nothing.n, nothing.wer, nothing.cer) == (0, 0.0, 0.0)


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_rates(["a", "b"], ["a"])


def test_evenly_spaced_samples_the_whole_manifest_not_its_head():
    from freeze_omni.eval.manifest import evenly_spaced

    items = list(range(10))
    assert evenly_spaced(items, 5) == [0, 2, 4, 6, 8]
    assert evenly_spaced(items, 3) == [0, 3, 6]
    assert evenly_spaced(items, None) == evenly_spaced(items, 10) == evenly_spaced(items, 99) == items
    with pytest.raises(ValueError):
        evenly_spaced(items, 0)


def test_rates_by_group_pool_the_edits_of_each_group():
    from freeze_omni.eval.metrics import rates_by_group

    rates = error_rates(["the cat sat", "a dog", "red green blue black"], ["the cat sat", "a cat", "red green"])
    rows = rates_by_group(["b", "a", "b"], rates)
    assert [(r["voice"], r["n"]) for r in rows] == [("a", 1), ("b", 2)]
    assert rows[0]["wer"] == 0.5 and rows[1]["wer"] == 2 / 7  # b: 2 deletions in 3 + 4 words
    assert rows[1]["cer"] == error_rates(["the cat sat", "red green blue black"], ["the cat sat", "red green"]).cer
    with pytest.raises(ValueError, match="2 groups but 3"):
        rates_by_group(["a", "b"], rates)
