"""The decoder's training answers are cut into phrases exactly as the turn engine cuts them."""

from types import SimpleNamespace

import torch

from dialogue_support import AnswerAfterSpeech, RecordingSpeaker, conversation, drive, make_engine, silence
from freeze_omni.decoder.answers import cut_phrases
from freeze_omni.dialogue.phrases import PhraseRule
from freeze_omni.llm.state_head import StateHead


class WordPieces:
    pieces = ["The", " capital", " of", " France", " is", " Paris", "."]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.pieces[i] for i in ids)


def test_the_first_phrase_ends_after_its_first_words():
    llm = SimpleNamespace(tokenizer=WordPieces())
    phrases = cut_phrases(llm, list(range(7)), [torch.full((2,), float(i)) for i in range(7)])
    assert [p.text for p in phrases] == ["The capital of", " France is Paris."]
    assert [p.token_ids for p in phrases] == [[0, 1, 2], [3, 4, 5, 6]]
    assert [p.index for p in phrases] == [0, 1]
    assert phrases[1].hidden[:, 0].tolist() == [3.0, 4.0, 5.0, 6.0]


@torch.no_grad()
def test_phrases_are_those_the_engine_hands_its_speaker(llm, speech_input, detector, speech):
    rule = PhraseRule(min_tokens=2, max_tokens=20, first_words=1)  # the tiny LLM writes few spaces and no stops
    head, speaker = StateHead(llm.hidden_size), RecordingSpeaker()
    engine = make_engine(llm, speech_input, detector, head, speaker, max_answer_tokens=40, phrases=rule)
    drive(engine, engine.new_session("user", seed=3), conversation(silence(0.5), speech["q1"], silence(4.0)),
          AnswerAfterSpeech(head))
    spoken = [p for p in speaker.phrases if p.text.strip()]
    assert len(spoken) >= 2 and len(spoken[0].token_ids) < rule.max_tokens  # the first words' rule cut
    tokens = speaker.tokens()
    hidden = [h for p in speaker.phrases for h in p.hidden]
    cut = cut_phrases(llm, tokens, hidden, rule)
    assert [(p.text, p.token_ids, p.index) for p in cut] == [(p.text, p.token_ids, p.index) for p in spoken]
