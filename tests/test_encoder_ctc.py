import torch

from freeze_omni.encoder.ctc import ALPHABET, BLANK, ctc_text, encode_text, greedy_decode


def test_targets_are_spoken_words_in_the_alphabet():
    assert ctc_text("It's 23 o'clock -- well, well!") == "it's twenty three o'clock well well"
    ids = encode_text("Hello, World")
    assert all(0 < i <= len(ALPHABET) for i in ids) and len(ids) == len("hello world")


def test_greedy_decode_merges_repeats_and_drops_blanks():
    h, e, l, o = (ALPHABET.index(c) + 1 for c in "helo")
    path = [h, h, BLANK, e, l, l, BLANK, l, o, o, BLANK, BLANK]
    log_probs = torch.full((1, len(path), len(ALPHABET) + 1), -10.0)
    log_probs[0, torch.arange(len(path)), torch.tensor(path)] = 0.0
    assert greedy_decode(log_probs, torch.tensor([len(path)])) == ["hello"]
    assert greedy_decode(log_probs, torch.tensor([6])) == ["hel"]
