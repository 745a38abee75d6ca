import pytest

from freeze_omni.dialogue.phrases import PhraseRule, ends_first_phrase_before, ends_phrase, phrase_cut


def test_first_phrase_may_end_at_a_comma_later_ones_need_a_sentence_end():
    assert not ends_phrase("Well, I think", 5, first=True)  # no punctuation at the end
    assert ends_phrase("Paris is big,", 4, first=True)
    assert not ends_phrase("Paris is big,", 4, first=False)
    assert ends_phrase("It is in France.", 5, first=False)
    assert ends_phrase("Is it? ", 4, first=False)


def test_short_phrases_wait_and_long_ones_are_cut():
    rule = PhraseRule(min_tokens=4, comma_after_tokens=20, max_tokens=40)
    assert not ends_phrase("Yes.", 1, first=True, rule=rule)
    assert ends_phrase("and so on and so forth,", 20, first=False, rule=rule)
    assert not ends_phrase("and so on and so forth,", 19, first=False, rule=rule)
    assert ends_phrase("no punctuation at all", 40, first=False, rule=rule)


def test_a_number_with_a_dot_is_not_a_sentence_end():
    assert not ends_phrase("The steps are: 1.", 6, first=False)
    assert not ends_phrase("It costs 3.", 5, first=False)
    assert ends_phrase("They were 3 of them.", 6, first=False)


def test_a_new_line_ends_a_phrase():
    assert ends_phrase("First this\n", 4, first=False)


def test_the_first_phrase_ends_before_the_word_after_its_first_words():
    assert ends_first_phrase_before("The capital of", " France")
    assert not ends_first_phrase_before("The capital", " of")
    assert not ends_first_phrase_before("The capital of Fr", "ance")  # inside a word
    assert not ends_first_phrase_before("The capital of", " France", PhraseRule(first_words=0))


def test_a_cut_comes_after_a_phrase_end_or_before_the_word_after_the_first_words():
    assert phrase_cut("Paris is big,", 4, True, ",") == 0
    assert phrase_cut("The capital of France", 4, True, " France") == 1  # " France" opens the next phrase
    assert phrase_cut("The capital of France", 4, False, " France") is None  # only the first phrase
    assert phrase_cut("The capital", 2, True, " capital") is None


def test_invalid_rules_are_refused():
    with pytest.raises(ValueError):
        PhraseRule(min_tokens=0)
    with pytest.raises(ValueError):
        PhraseRule(min_tokens=10, max_tokens=5)
    with pytest.raises(ValueError):
        PhraseRule(first_words=-1)
