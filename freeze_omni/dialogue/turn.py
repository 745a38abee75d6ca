"""The turn engine: listening, answering, speaking, ignoring and barge-in, one 160 ms chunk at a time.

`TurnEngine` holds only models and settings; every call takes the user's `Session` and changes
it, so one engine serves any number of users and their calls may be interleaved in any order.
Work is explicit: `accept_audio` handles input, `step_answer` does answer work in small units,
and a caller (CLI, server scheduler) decides how to interleave them. No threads. The same work
as generators (`audio_work`, `answer_work`) lets `run_batch` put the LLM passes of several
sessions, whatever each is doing, into shared forward passes (`batching.py`).

Exact rules. Times are input-stream times: ms of user audio accepted so far (the session clock).

1. Input is cut into 160 ms chunks (2560 samples at 16 kHz); a remainder waits for the next call.
   Each chunk goes through the VAD and into a pre-roll buffer of the last `preroll_ms`.
2. A VAD start while no user turn is being heard opens one. The turn's LLM input is user_start
   ids, the prompt embeddings, then the speech, starting with the whole pre-roll (this chunk
   included; silence where the session is younger than the pre-roll, so every turn starts with the
   same lead), through features -> encoder -> adapter -> `FrozenLLM.prefill`.
   - With no answer active the turn extends the conversation KV itself, from its current length
     (the turn start).
   - With an answer active (answering or speaking) it is a barge-in: the turn extends a copy of
     the conversation in which the answer is cut to what the user had heard at the VAD onset
     (`playout.py`) and closed with the assistant-end ids.
3. Every later chunk is encoded and prefilled the same way, speech or not. After each chunk that
   added embeddings, the state head reads the hidden state of the last position (for the
   pre-roll only its last one): a `StateDecision`. A VAD start inside a turn is a pause ending,
   not a new turn.
4. LISTEN: keep listening.
   IGNORE, or still no decision `end_timeout_ms` after the last VAD end, or the turn reaching
   `max_turn_ms`: the turn is forgotten. Its own KV is cropped back to the turn start (a
   barge-in copy is dropped and the answer goes on) -> `TurnIgnored`. The conversation is exactly
   as if the sound had never been heard.
5. ANSWER: the turn is accepted. For a barge-in, the answer (paused since the turn opened, rule 8)
   ends for good and the copy becomes the conversation -> `Interrupted` with the kept text. Then
   user_end_assistant_start ids are prefilled -> `AnswerStarted`.
   After ANSWER or IGNORE the VAD segment is closed, so speech that goes on opens a new turn
   (a barge-in on the new answer), as the published server does.
6. `step_answer` does one unit of work per step: speech work (start the next ready phrase, or
   make the next packet of the one being synthesised) while less than `audio_lead_ms` of audio
   waits ahead of the clock, else the next token, so text keeps ahead of speech without
   starving playback. Each token is fed to the KV at once, with its hidden state kept for the
   speaker. A phrase ends by `phrases.ends_phrase` (the first one also before its fourth word,
   `ends_first_phrase_before`) and is queued; when its synthesis starts, its text is shown ->
   `AnswerText` (text and speech stay in step), packets -> `AnswerAudio`. Generation ends at a
   stop token (not fed) or `max_answer_tokens`; the assistant-end ids are prefilled in its place
   and the last phrase is queued.
7. When everything is produced and the playout has reached the session clock -> `AnswerFinished`,
   and the answer joins the history. Audio is played on the input clock (`playout.py`).
8. Talk-over pauses the answer before any decision: when an answer is active and the user's
   speech has lasted `pause_after_ms` (well before the VAD decides it is a segment), or a
   barge-in turn is open, playback pauses -> `AnswerPaused` (the client drops its queued audio)
   and answer work stops. When that speech comes to nothing (a click, a cough, a turn ignored
   or timed out) -> `AnswerResumed`, and the audio that was not heard is sent again. A barge-in
   that is accepted ends the paused answer for good (rule 5).
   The pause does not wait for a whole chunk: the VAD also runs ahead over the samples still
   waiting for their chunk, on a copy of its state (the chunk runs the same windows again when
   it is complete), so with a client that sends short packets the answer stops within a packet
   of the run reaching `pause_after_ms`, not at the end of a 160 ms chunk.
9. Drafts: the head decides a few chunks after the user stops, and those chunks carry only
   silence. So when a chunk ends clearly silent (its last VAD window) and the head still listens
   (with p(answer) >= `draft_threshold`, by default any), a draft is set at the turn's current KV
   length. Any later VAD window that is not clearly silent drops it (the user went on), and a
   later silent chunk may set a new one. Its work is answer work, so it runs only when nothing
   else is waiting (a server serves it after every real answer): a copy of the turn's KV up to
   that length, the assistant-start ids, then tokens until the first phrase is ready, sampled
   with a copy of the session's generator, then that phrase's speech until its first packet
   exists (kept, unshown and unplayed). When the head answers with a draft set, the answer is
   always the one on the turn up to the draft: a draft with work done becomes the answer (its KV
   the conversation, its generator the session's; a phrase it began is shown, and its packets
   played, from then on); otherwise the turn's KV is cropped to the draft's length and the
   answer starts there as in rule 5. So the chunks after the draft (silence) are never in the
   conversation, and what is said does not depend on how much idle time there was, only when.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.framing import check_mono_float
from freeze_omni.audio.vad import WINDOW as VAD_WINDOW, SpeechDetector
from freeze_omni.dialogue.batching import LLMCall, Work, run_alone, run_together
from freeze_omni.dialogue.events import (
    AnswerAudio,
    AnswerFinished,
    AnswerPaused,
    AnswerResumed,
    AnswerStarted,
    AnswerText,
    Event,
    Interrupted,
    SpeechEnded,
    SpeechStarted,
    StateDecision,
    TurnIgnored,
)
from freeze_omni.dialogue.phrases import PhraseRule, phrase_cut
from freeze_omni.dialogue.session import Answer, AnswerCut, AnswerDraft, HistoryEntry, ListeningTurn, Session
from freeze_omni.dialogue.speaker import Phrase, Speaker, TextOnlySpeaker
from freeze_omni.encoder import UNLIMITED
from freeze_omni.encoder.frontend import feature_stream
from freeze_omni.llm import FrozenLLM, KVCache, SamplingConfig
from freeze_omni.llm.sampling import sample
from freeze_omni.llm.state_head import DialogueState, StateHead, acoustic_context, chunk_means
from freeze_omni.speech_input import SpeechInput

CHUNK_SAMPLES = SAMPLE_RATE * 160 // 1000
DEFAULT_SYSTEM_PROMPT = "You are a helpful voice assistant. Answer briefly, in plain spoken English."


@dataclass(frozen=True)
class DialogueConfig:
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    sampling: SamplingConfig = SamplingConfig()
    preroll_ms: float = 960.0  # six chunks of audio before the VAD start go in with it
    end_timeout_ms: float = 1200.0  # a turn with no decision this long after the VAD end is dropped
    max_turn_ms: float = 30000.0
    max_answer_tokens: int = 256
    phrases: PhraseRule = field(default_factory=PhraseRule)
    left_chunks: int = UNLIMITED  # encoder attention context within a turn
    pause_after_ms: float = 96.0  # user speech this long pauses an active answer (rule 8)
    audio_lead_ms: float = 480.0  # answer audio queued ahead of playback before tokens come first again
    answer_threshold: float = 0.0  # p(answer) the state head needs to take the turn (0: its most likely state)
    ignore_threshold: float = 0.0  # p(ignore) it needs to drop the turn (0: its most likely state)
    # p(answer) at which a silent chunk begins a draft answer (rule 9; > 1: never). 0: every silent
    # chunk, since the head's p(answer) mostly jumps from ~0 to the decision in one chunk
    draft_threshold: float = 0.0

    def __post_init__(self) -> None:
        if self.preroll_samples < CHUNK_SAMPLES:
            raise ValueError(f"preroll_ms must cover at least one 160 ms chunk, got {self.preroll_ms}")
        if self.max_answer_tokens < 1:
            raise ValueError(f"max_answer_tokens must be >= 1, got {self.max_answer_tokens}")

    @property
    def preroll_samples(self) -> int:
        return int(self.preroll_ms * SAMPLE_RATE / 1000)


class TurnEngine:
    def __init__(self, speech_input: SpeechInput, llm: FrozenLLM, state_head: StateHead,
                 detector: SpeechDetector, speaker: Speaker | None = None,
                 config: DialogueConfig = DialogueConfig()) -> None:
        if speech_input.prompt.device != llm.device:
            raise ValueError(f"speech input on {speech_input.prompt.device} but the LLM on {llm.device}")
        self.speech_input = speech_input.eval()
        self.llm = llm
        self.state_head = state_head.eval()
        self.detector = detector
        self.speaker = speaker or TextOnlySpeaker()
        self.config = config
        self.features = feature_stream(speech_input.encoder.config)
        self.encoder_chunk = self.features.config.chunk_frames // speech_input.encoder.config.subsampling
        template = llm.template
        self._system_ids = template.system(llm.tokenizer, config.system_prompt)
        self._user_start, self._answer_start = template.user_start, template.user_end_assistant_start
        self._assistant_end = template.assistant_end or [llm.tokenizer.eos_token_id]

    # ---- sessions -----------------------------------------------------------------------------
    @torch.no_grad()
    def new_session(self, session_id: str, seed: int = 0, system_prompt: str | None = None) -> Session:
        """A fresh conversation: the system prompt (the config's, or this user's own) is prefilled
        into its KV; everything else about the prompt lives in the session, so users may differ."""
        ids = self._system_ids if system_prompt is None else self.llm.template.system(self.llm.tokenizer, system_prompt)
        kv = self.llm.new_cache()
        self.llm.prefill(self.llm.embed_ids(ids), kv)
        return Session(session_id=session_id, kv=kv, vad=self.detector.initial_state(),
                       generator=torch.Generator().manual_seed(seed))

    # ---- input --------------------------------------------------------------------------------
    @torch.no_grad()
    def accept_audio(self, session: Session, pcm: np.ndarray) -> list[Event]:
        """Add 16 kHz mono float samples (any length); handle every complete 160 ms chunk.

        Bad input (not a 1-D float array, or NaN/inf) raises `AudioError`, a `FreezeOmniError`,
        and leaves the session unchanged.
        """
        return run_alone(self.llm, self.audio_work(session, pcm))

    @torch.no_grad()
    def run_batch(self, items: Sequence[tuple[Session, Work[list[Event]]]]) -> list[list[Event] | Exception]:
        """Each session's piece of work (`audio_work` or `answer_work`, at most one per session),
        their LLM work in shared passes; each result is that session's events or the exception
        its work raised."""
        _check_distinct([session for session, _ in items])
        return run_together(self.llm, [work for _, work in items])

    def audio_work(self, session: Session, pcm: np.ndarray) -> Work[list[Event]]:
        """`accept_audio` as a generator of its LLM passes."""
        samples = np.concatenate([session.unconsumed, check_mono_float(pcm)])
        n_chunks = samples.size // CHUNK_SAMPLES
        session.unconsumed = samples[n_chunks * CHUNK_SAMPLES:].copy()
        events: list[Event] = []
        for i in range(n_chunks):
            events += yield from self._chunk(session, samples[i * CHUNK_SAMPLES:(i + 1) * CHUNK_SAMPLES])
        return events + self._pause_ahead(session)

    def _chunk(self, s: Session, pcm: np.ndarray) -> Work[list[Event]]:
        vad_events, s.vad = self.detector.accept(pcm, s.vad)
        s.preroll = np.concatenate([s.preroll, pcm])[-self.config.preroll_samples:]
        s.samples_in += pcm.size
        now = s.t_ms
        events: list[Event] = []
        audio = pcm
        for vad in vad_events:
            if vad.kind == "end":
                events.append(SpeechEnded(now, vad.t_ms))
                if s.listening is not None:
                    s.listening.ended_at_ms, s.listening.speech_end_ms = now, vad.t_ms
                continue
            events.append(SpeechStarted(now, vad.t_ms))
            if s.listening is not None:
                s.listening.ended_at_ms = s.listening.speech_end_ms = None
            else:
                s.listening = yield from self._open_turn(s, vad.t_ms)
                audio = np.pad(s.preroll, (self.config.preroll_samples - s.preroll.size, 0))
        if s.listening is not None:
            events += yield from self._listen(s, audio, now)
        return events + self._finish_if_played(s) + self._pause_or_resume(s, now)

    def _pause_or_resume(self, s: Session, now: float) -> list[Event]:
        """Rule 8."""
        answer = s.answer
        if answer is None:
            return []
        paused = answer.playout.paused_ms is not None
        talking = s.listening is not None or s.vad.in_speech
        if not paused and (talking or s.vad.speech_run_ms >= self.config.pause_after_ms):
            return [AnswerPaused(now, answer.playout.pause(now))]
        if paused and not talking and s.vad.speech_since is None:
            unplayed = answer.playout.resume(now)
            resent = [AnswerAudio(now, unplayed, self.speaker.sample_rate)] if unplayed.size else []
            return [AnswerResumed(now)] + resent
        return []

    def _pause_ahead(self, s: Session) -> list[Event]:
        """Rule 8 on the samples still waiting for their chunk: the session's VAD state is left as
        it is, so nothing but the pause depends on how the input was cut into packets."""
        answer = s.answer
        if answer is None or answer.playout.paused_ms is not None or s.unconsumed.size < VAD_WINDOW:
            return []
        _, ahead = self.detector.accept(s.unconsumed, s.vad)
        if not (ahead.in_speech or ahead.speech_run_ms >= self.config.pause_after_ms):
            return []
        now = s.t_ms + 1000.0 * (ahead.samples_seen - s.vad.samples_seen) / SAMPLE_RATE
        return [AnswerPaused(now, answer.playout.pause(now))]

    def _open_turn(self, s: Session, onset_ms: float) -> Work[ListeningTurn]:
        """Rule 2: a new user turn on the conversation, or on a copy with the answer cut (barge-in)."""
        kv, cut = s.kv, None
        if s.answer is not None:
            answer = s.answer
            kept = answer.playout.said_tokens(onset_ms)
            cut = AnswerCut(kept, self._decode(answer.tokens[:kept]))
            kv = s.kv.clone()
            kv.crop(answer.start + kept)
            yield LLMCall(self.llm.embed_ids(self._assistant_end), kv)
        turn_start = kv.length
        lead = torch.cat([self.llm.embed_ids(self._user_start).float(),
                          self.speech_input.prompt.to(self.llm.device, torch.float32)[None]], 1)
        speech = self.speech_input.initial_cache(self.encoder_chunk, self.config.left_chunks, self.llm.device)
        return ListeningTurn(kv=kv, turn_start=turn_start, features=self.features.initial_state(), speech=speech,
                             started_ms=onset_ms, cut=cut, lead=lead,
                             acoustic=self.state_head.initial_history(self.llm.device))

    def _listen(self, s: Session, audio: np.ndarray, now: float) -> Work[list[Event]]:
        """Rules 3-5: encode and prefill the audio, then decide on the last position's hidden state."""
        turn = s.listening
        chunks, turn.features = self.features.accept(audio, turn.features)
        decision = None
        if chunks:
            feats = torch.from_numpy(np.concatenate(chunks))[None].to(self.llm.device)
            embeds, frames, turn.speech = self.speech_input.step(feats, turn.speech)
            acoustic = None
            if self.state_head.acoustic_chunks:
                rows, turn.acoustic = acoustic_context(chunk_means(frames[0].float(), self.encoder_chunk), turn.acoustic)
                acoustic = rows[-1]
            if embeds.shape[1]:
                if turn.lead is not None:
                    embeds, turn.lead = torch.cat([turn.lead.to(embeds.dtype), embeds], 1), None
                output = yield LLMCall(embeds, turn.kv)
                state, probabilities = self.state_head.decide(output.last, self.config.answer_threshold, acoustic,
                                                              self.config.ignore_threshold)
                decision = StateDecision(now, state, probabilities, barge_in=turn.cut is not None)
        events: list[Event] = [decision] if decision else []
        silent = s.vad.voiced_until < s.vad.samples_seen
        if turn.draft is not None and turn.draft.voiced_until != s.vad.voiced_until:
            turn.draft = None  # rule 9: the user went on, and the draft has not heard it
        if decision and decision.state == DialogueState.LISTEN and turn.draft is None and silent \
                and decision.probabilities[DialogueState.ANSWER] >= self.config.draft_threshold:
            turn.draft = AnswerDraft(turn.kv.length, s.vad.voiced_until)
        if decision and decision.state == DialogueState.ANSWER:
            return events + (yield from self._accept(s, now))
        if decision and decision.state == DialogueState.IGNORE:
            return events + self._forget(s, now, "state")
        timed_out = turn.ended_at_ms is not None and now - turn.ended_at_ms >= self.config.end_timeout_ms
        if timed_out or now - turn.started_ms >= self.config.max_turn_ms:
            return events + self._forget(s, now, "timeout")
        return events

    def _forget(self, s: Session, now: float, reason: str) -> list[Event]:
        turn, s.listening = s.listening, None
        if turn.kv is s.kv:
            s.kv.crop(turn.turn_start)
        s.vad = self.detector.close_segment(s.vad)
        return [TurnIgnored(now, reason)]

    def _accept(self, s: Session, now: float) -> Work[list[Event]]:
        turn, s.listening = s.listening, None
        # The head often decides before the VAD's end event: then speech ended where the silence began.
        speech_end = turn.speech_end_ms
        if speech_end is None:
            speech_end = now if s.vad.silence_since_ms is None else s.vad.silence_since_ms
        events: list[Event] = []
        if turn.cut is not None:  # the answer was paused when this turn opened, so it is still here
            s.history.append(HistoryEntry("assistant", turn.cut.kept_text, s.answer.started_ms, now, interrupted=True))
            s.answer = None
            events.append(Interrupted(now, turn.cut.kept_text))
            s.kv = turn.kv
        s.history.append(HistoryEntry("user", None, turn.started_ms, now))
        draft = turn.draft
        spoken: list[Event] = []
        if draft is not None and draft.answer is not None:  # rule 9
            s.kv, s.answer = draft.kv, draft.answer
            s.answer.started_ms = now
            s.generator.set_state(draft.generator.get_state())
            if draft.phrase is not None:  # shown and played from now, as if it had started now
                spoken = self._show_phrase(s, s.answer, draft.phrase)
                spoken += [event for packet in draft.packets for event in self._play(s, s.answer, packet)]
                if s.answer.speech is None:
                    s.answer.playout.complete_phrase()
        else:
            if draft is not None:
                s.kv.crop(draft.length)
            output = yield LLMCall(self.llm.embed_ids(self._answer_start), s.kv, logits=True)
            s.answer = Answer(turn_start=turn.turn_start, start=s.kv.length, started_ms=now, logits=output.logits)
        s.vad = self.detector.close_segment(s.vad)
        return events + [AnswerStarted(now, speech_end)] + spoken

    # ---- output -------------------------------------------------------------------------------
    @torch.no_grad()
    def step_answer(self, session: Session, max_steps: int = 1) -> list[Event]:
        """Up to `max_steps` units of answer work (rule 6); nothing to do returns []."""
        events: list[Event] = []
        for _ in range(max_steps):
            if self.next_answer_unit(session) is None:
                break
            events += run_alone(self.llm, self._answer_unit(session))
        return events + self._finish_if_played(session)

    def answer_work(self, session: Session) -> Work[list[Event]]:
        """`step_answer` (one step) as a generator of its LLM passes."""
        events = yield from self._answer_unit(session)
        return events + self._finish_if_played(session)

    def _answer_unit(self, s: Session) -> Work[list[Event]]:
        unit, answer = self.next_answer_unit(s), s.answer
        if unit is None:
            return []
        if s.listening is not None:  # while a turn is heard, only its draft has answer work
            return (yield from self._draft_unit(s, s.listening))
        if unit == "token":
            return (yield from self._next_token(answer, s.kv, s.generator))
        return self._start_phrase(s, answer) if answer.speech is None else self._next_packet(s, answer)

    def _draft_unit(self, s: Session, turn: ListeningTurn) -> Work[list[Event]]:
        """Rule 9: the assistant-start ids on a copy of the turn as it was, the draft's next token,
        or its first phrase's speech: started, then packets kept unplayed until the answer begins."""
        draft = turn.draft
        if draft.answer is None:
            draft.kv = turn.kv.clone(draft.length)  # the turn only grows, so its first positions are as they were
            draft.generator = torch.Generator().set_state(s.generator.get_state())
            output = yield LLMCall(self.llm.embed_ids(self._answer_start), draft.kv, logits=True)
            draft.answer = Answer(turn_start=turn.turn_start, start=draft.kv.length, started_ms=s.t_ms,
                                  logits=output.logits)
            return []
        answer = draft.answer
        if draft.phrase is None and not answer.ready:
            return (yield from self._next_token(answer, draft.kv, draft.generator))
        if draft.phrase is None:
            draft.phrase = answer.ready.popleft()
            answer.speech = iter(self.speaker.speak(draft.phrase))
            return []
        packet = next(answer.speech, None)
        if packet is None:
            answer.speech = None
        elif packet.size:
            draft.packets.append(packet)
        return []

    def has_answer_work(self, session: Session) -> bool:
        """Whether `step_answer` would do anything now."""
        return self.next_answer_unit(session) is not None

    def next_answer_unit(self, session: Session) -> Literal["token", "speech"] | None:
        """What `step_answer` does next (rule 6): speech work (start the next phrase, or its next
        packet) while less than `audio_lead_ms` of audio is queued ahead of the clock or no tokens
        remain, else the next token; None when there is nothing to do (or playback is paused).
        While a turn is heard, its draft's work (rule 9) until its first packet is ready."""
        turn = session.listening
        if turn is not None:
            draft = turn.draft
            if draft is None or not draft.working:
                return None
            return "token" if draft.phrase is None and (draft.answer is None or not draft.answer.ready) else "speech"
        answer = session.answer
        if answer is None or answer.produced or answer.playout.paused_ms is not None:
            return None
        speech_ready = answer.speech is not None or bool(answer.ready)
        if speech_ready and (answer.logits is None
                             or answer.playout.end_ms - session.t_ms < self.config.audio_lead_ms):
            return "speech"
        return "token"  # not produced and no speech ready: generation is still going

    def audio_slack_ms(self, session: Session) -> float | None:
        """How far the answer's queued audio reaches beyond the session clock; negative: how long
        the answer has been without audio (since it started, or since its audio ran out). None
        when there is no answer work; inf for a draft (rule 9), which waits for every real answer.
        A server serves the least slack first."""
        if self.next_answer_unit(session) is None:
            return None
        if session.listening is not None:
            return math.inf
        answer = session.answer
        return max(answer.playout.audio_end_ms, answer.started_ms) - session.t_ms

    def _start_phrase(self, s: Session, answer: Answer) -> list[Event]:
        """The next phrase goes to the speaker; its text is shown now, as its audio starts."""
        phrase = answer.ready.popleft()
        answer.speech = iter(self.speaker.speak(phrase))
        return self._show_phrase(s, answer, phrase)

    def _show_phrase(self, s: Session, answer: Answer, phrase: Phrase) -> list[Event]:
        answer.text += phrase.text
        answer.playout.add_phrase(len(phrase.token_ids), s.t_ms)
        return [AnswerText(s.t_ms, phrase.text)]

    def _next_packet(self, s: Session, answer: Answer) -> list[Event]:
        packet = next(answer.speech, None)
        if packet is None:
            answer.speech = None
            answer.playout.complete_phrase()
            return []
        if not packet.size:  # a slice of synthesis with no audio ready yet (Speaker protocol)
            return []
        return self._play(s, answer, packet)

    def _play(self, s: Session, answer: Answer, packet: np.ndarray) -> list[Event]:
        answer.playout.add_packet(packet, self.speaker.sample_rate, s.t_ms)
        return [AnswerAudio(s.t_ms, packet, self.speaker.sample_rate)]

    def _next_token(self, answer: Answer, kv: KVCache, generator: torch.Generator) -> Work[list[Event]]:
        """The answer's next token, fed to `kv` (the conversation's, or a draft's)."""
        token = None
        if len(answer.tokens) < self.config.max_answer_tokens:
            token = int(sample(answer.logits, self.config.sampling, generator)[0])
        if token is None or token in self.llm.stop_ids:
            yield LLMCall(self.llm.embed_ids(self._assistant_end), kv)
            answer.logits = None
            self._hand_over(answer, len(answer.tokens))
            return []
        step = yield LLMCall(self.llm.embed_ids([token]), kv, logits=True)
        answer.tokens.append(token)
        answer.hidden.append(step.last[0])
        answer.logits = step.logits
        text = self._decode(answer.tokens)[len(answer.handed_text):]
        if text.endswith("\ufffd"):  # a character split across tokens
            return []
        cut = phrase_cut(text, len(answer.tokens) - answer.phrase_start, answer.phrases == 0, self._decode([token]),
                         self.config.phrases)
        if cut is not None:
            self._hand_over(answer, len(answer.tokens) - cut)
        return []

    def _decode(self, tokens: list[int]) -> str:
        return self.llm.tokenizer.decode(tokens, skip_special_tokens=True)

    def _hand_over(self, answer: Answer, end: int) -> None:
        """Tokens phrase_start..end become a phrase, queued for the speaker."""
        n = end - answer.phrase_start
        if n == 0:
            return
        text = self._decode(answer.tokens[:end])[len(answer.handed_text):]
        answer.ready.append(Phrase(text=text, token_ids=answer.tokens[answer.phrase_start:end],
                                   hidden=torch.stack(answer.hidden[:n]), index=answer.phrases))
        answer.handed_text += text
        answer.phrases += 1
        answer.phrase_start = end
        answer.hidden = answer.hidden[n:]

    def _finish_if_played(self, s: Session) -> list[Event]:
        """Rule 7."""
        answer = s.answer
        if answer is None or not answer.produced or answer.playout.paused_ms is not None \
                or answer.playout.end_ms > s.t_ms:
            return []
        s.answer = None
        s.history.append(HistoryEntry("assistant", answer.text, answer.started_ms, s.t_ms))
        return [AnswerFinished(s.t_ms, answer.text)]


def _check_distinct(sessions: Sequence[Session]) -> None:
    ids = [session.session_id for session in sessions]
    if len(set(ids)) != len(ids):
        raise ValueError(f"a batch holds each session at most once, got {ids}")
