"""Whisper's best few transcriptions of a chunk, and the choice among them with report context.

Beam search keeps :data:`HYPOTHESES` transcriptions of each chunk to the end;
Whisper alone takes the one it scores highest.  Where Whisper hesitates
between, say, "bronchic tosses in the lower lobes" and "bronchiectasis in the
lower lobes", the chest CT language model (:mod:`app.speech.context`) knows
which one a report says.  Each hypothesis is scored

    Whisper's log-probability + LM_WEIGHT * the language model's log-probability
    + WORD_BONUS * its words

after the lexicon and phonetic corrections (so a spelling those fix anyway is
not held against it); the word bonus keeps the language model from preferring
a hypothesis that leaves words out.  Only hypotheses that keep every chest CT
term, negation, laterality and change word of Whisper's best are in the
running: the report model may mend what Whisper garbled, never make "spleen"
"pleura" or drop a "no".  Keeping several hypotheses costs nothing
extra: the beam holds them anyway.

The decoding is faster-whisper's for one window of at most 30 s without
timestamps (what :class:`app.speech.transcriber.Transcriber` asks for); where
the best hypothesis looks broken (repetitive, or a log-probability so low that
faster-whisper would retry at a higher temperature) the caller decodes the
chunk with faster-whisper's own fallback instead.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.speech.audio import AudioArray
from app.speech.context import NEVER_CHANGE
from app.speech.vocabulary import CHEST_CT_VOCABULARY

if TYPE_CHECKING:
    from ctranslate2 import StorageView
    from faster_whisper import WhisperModel

HYPOTHESES = 5
LM_WEIGHT = 0.5
"""Language-model log-probability per unit of Whisper log-probability."""
WORD_BONUS = 4.0
"""Added per word, so that neither model simply favours shorter text.  Both weights were
chosen on the development dictations (bench/radiology_dictations.py), in the middle of the
range that did about equally well there (0.3 to 0.7, 3 to 5: WER 9.7% with Whisper's own
choice, 7.8 to 8.4% rescored), never on the held-out ones."""
MAX_COMPRESSION_RATIO = 2.4
MIN_AVG_LOGPROB = -1.0
"""faster-whisper's thresholds for falling back to a higher temperature."""


@dataclass(frozen=True, slots=True)
class Hypothesis:
    text: str
    logprob: float  # Whisper's log-probability of the whole text
    tokens: int


@dataclass(frozen=True, slots=True)
class NBest:
    hypotheses: tuple[Hypothesis, ...]  # best first, in Whisper's order
    no_speech_prob: float

    @property
    def broken(self) -> bool:
        """Whisper's best is repetitive or very unlikely: a temperature fallback is due."""
        best = self.hypotheses[0]
        return (
            compression_ratio(best.text) > MAX_COMPRESSION_RATIO
            or best.logprob / (best.tokens + 1) < MIN_AVG_LOGPROB
        )


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def decode(
    model: WhisperModel, samples: AudioArray, *, prompt: str | None, beam_size: int
) -> NBest:
    """Whisper's ``HYPOTHESES`` best English transcriptions of at most 30 s of audio."""
    return generate(model, encode(model, samples), prompt=prompt, beam_size=beam_size)


def encode(model: WhisperModel, samples: AudioArray) -> StorageView:
    """Whisper's encoding of at most 30 s of audio: decode it again with another prompt
    (:func:`generate`) without paying for the encoder twice."""
    from faster_whisper.audio import pad_or_trim

    features = model.feature_extractor(samples)
    frames = min(model.feature_extractor.nb_max_frames, features.shape[-1] - 1)
    return model.encode(pad_or_trim(features[:, :frames]))


def generate(
    model: WhisperModel, encoded: StorageView, *, prompt: str | None, beam_size: int
) -> NBest:
    """Whisper's ``HYPOTHESES`` best English transcriptions of :func:`encode`'s output."""
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens

    tokenizer = Tokenizer(
        model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en"
    )
    previous = tokenizer.encode(" " + prompt.strip()) if prompt else []
    tokens = model.get_prompt(tokenizer, previous, without_timestamps=True)
    result = model.model.generate(
        encoded,
        [tokens],
        beam_size=beam_size,
        num_hypotheses=min(HYPOTHESES, beam_size),
        length_penalty=1.0,
        max_length=model.max_length,
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=True,
        suppress_tokens=list(get_suppressed_tokens(tokenizer, (-1,)) or ()),
    )[0]
    hypotheses = tuple(
        Hypothesis(
            text=tokenizer.decode(ids).strip(),
            logprob=score * len(ids),  # the score is the log-probability per token
            tokens=len(ids),
        )
        for ids, score in zip(result.sequences_ids, result.scores, strict=True)
    )
    return NBest(hypotheses=hypotheses, no_speech_prob=result.no_speech_prob)


def kept_words(text: str) -> Counter[str]:
    """The words of ``text`` a choice must keep: chest CT terms and the words of
    :data:`app.speech.context.NEVER_CHANGE`."""
    return Counter(
        word
        for word in re.findall(r"[a-z]+", text.lower())
        if word in CHEST_CT_VOCABULARY or word in NEVER_CHANGE
    )


def choose(
    hypotheses: Sequence[Hypothesis],
    language_model: Callable[[str], float],
    *,
    kept: Callable[[str], Counter[str]] = kept_words,
) -> Hypothesis:
    """The hypothesis with the best combined score (see the module docstring) among those
    that keep every word of Whisper's best that ``kept`` names (chest CT terms, negations,
    laterality and change words): rescoring may mend what Whisper garbled, never swap one
    term or statement for another ("pleura" for "spleen")."""
    best = hypotheses[0]
    needed = kept(best.text)
    allowed = [h for h in hypotheses if h is best or not needed - kept(h.text)]

    def combined(hypothesis: Hypothesis) -> float:
        words = len(hypothesis.text.split())
        return hypothesis.logprob + LM_WEIGHT * language_model(hypothesis.text) + WORD_BONUS * words

    return max(allowed, key=combined)
