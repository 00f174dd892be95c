"""Whisper (faster-whisper) with the radiology prompt: audio in, :class:`Transcript` out.

Dictations are transcribed segment by segment: voice-activity detection (the
Silero model bundled with faster-whisper) finds the speech, the pauses between
phrases cut it into chunks of at most :data:`CHUNK_SECONDS`, and each chunk is
decoded on its own with the vocabulary prompt.  Whisper's own 30 s windowing
skips words at window edges, and a prompt given only to the first window fades
after it; short, pause-aligned chunks with the prompt on each avoid both.  The
quality signals of the chunks are combined, weighted by duration.  Of Whisper's best few
transcriptions of a chunk the chest CT language model picks one (:mod:`nbest`), after a
second decoding of a chest chunk with the terms its odd words sound like named in the
prompt (:mod:`biasing`).

Chunks do not depend on each other, so with ``ModelOptions(workers=n)`` up to
``n`` of them are decoded at once (CTranslate2 releases the GIL).  On a CPU,
two workers of one thread each beat one worker of two threads: a tiny model's
decoder steps are too small to split across cores.

A :class:`Transcriber` holds the process's one loaded model; a worker builds it
once with :meth:`Transcriber.load`, never per request.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.speech import biasing, nbest
from app.speech.audio import SAMPLE_RATE, AudioArray, DecodedAudio, NoSpeechError
from app.speech.lexicon import VOCABULARY_PROMPT, has_context
from app.speech.model import ModelOptions, load_model, locate_model
from app.speech.postprocess import correct_transcript, report_logprob
from app.speech.quality import estimate_snr_db, transcript_confidence
from app.speech.transcript import Transcript, TranscriptQuality

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

LANGUAGE = "en"
BEAM_SIZE = 5
FIRST_LOOK_BEAM = 1
"""Greedy: the first look only finds the terms to name in the prompt, and costs a third of a
beam search's decoder time."""
CHUNK_SECONDS = 20.0
"""Below Whisper's 30 s window, so a chunk is decoded in one pass.  tiny.en garbles and drops
less of a shorter chunk: 20 s rather than 28 s took the tuning dictations of
bench/radiology_dictations.py from 27.6% to 25.2% corrected WER (both halves of the 24 alike:
29.9 -> 27.1 and 25.3 -> 23.4; development 9.4 -> 9.3).  Every chunk costs one encoder pass
over a padded 30 s window, so shorter chunks cost CPU (CPU-RTF 0.044 -> 0.050 there)."""
TAIL_SECONDS = 6.0
MAX_JOINED_SECONDS = 28.0
"""A dictation's last few seconds are not a chunk of their own (every chunk costs an encoder
pass over a padded 30 s window and two decoder passes): they join the chunk before if the
two fit in one window with room to spare."""
PAUSE_MS = 300
"""A pause this long between phrases is a place to cut."""
SPEECH_PAD_MS = 200


@dataclass(frozen=True, slots=True)
class RawTranscription:
    """Whisper's output before any correction."""

    text: str
    mean_logprob: float
    no_speech_prob: float
    speech_seconds: float


class Transcriber:
    """Transcribes dictations with one loaded Whisper model."""

    def __init__(
        self,
        *,
        model: WhisperModel,
        model_name: str,
        prompt: str | None = VOCABULARY_PROMPT,
        beam_size: int = BEAM_SIZE,
        workers: int = 1,
        rescore: bool = True,
        bias: bool = True,
    ) -> None:
        self._model = model
        self.model_name = model_name
        self._prompt = prompt
        self._beam_size = beam_size
        self._rescore = rescore
        self._bias = bias
        self._pool = (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="whisper")
            if workers > 1
            else None
        )

    @classmethod
    def load(
        cls,
        *,
        spec: str | Path | None,
        cache_dir: Path,
        options: ModelOptions | None = None,
        prompt: str | None = VOCABULARY_PROMPT,
        rescore: bool = True,
        bias: bool = True,
    ) -> Transcriber:
        """Locate (and if need be assemble) the model and load it once for this process."""
        location = locate_model(spec, cache_dir=cache_dir)
        options = options or ModelOptions()
        model = load_model(location, options)
        return cls(
            model=model,
            model_name=location.name,
            prompt=prompt,
            workers=options.workers,
            rescore=rescore,
            bias=bias,
        )

    def transcribe(self, audio: DecodedAudio) -> Transcript:
        """Transcribe and correct one dictation; :class:`NoSpeechError` if no words are found."""
        started = time.perf_counter()
        raw = self.transcribe_raw(audio)
        corrected = correct_transcript(raw.text)
        snr_db = estimate_snr_db(audio.samples)
        quality = TranscriptQuality(
            mean_logprob=raw.mean_logprob,
            no_speech_prob=raw.no_speech_prob,
            snr_db=snr_db,
            speech_seconds=raw.speech_seconds,
            confidence=transcript_confidence(
                mean_logprob=raw.mean_logprob, no_speech_prob=raw.no_speech_prob, snr_db=snr_db
            ),
        )
        log.info(
            "transcribed %.1f s of audio in %.2f s with %s (confidence %.2f)",
            audio.duration,
            time.perf_counter() - started,
            self.model_name,
            quality.confidence,
        )
        return Transcript(
            raw_text=raw.text,
            text=corrected.text,
            sections=dict(corrected.sections),
            quality=quality,
            model_name=self.model_name,
            duration=audio.duration,
        )

    def transcribe_raw(self, audio: DecodedAudio) -> RawTranscription:
        """Whisper's words and quality signals, chunk by chunk, without corrections."""
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        vad = VadOptions(
            min_silence_duration_ms=PAUSE_MS,
            speech_pad_ms=SPEECH_PAD_MS,
            max_speech_duration_s=CHUNK_SECONDS,
        )
        spans = [(span["start"], span["end"]) for span in get_speech_timestamps(audio.samples, vad)]
        chunks = list(_chunks(spans))

        def decode(chunk: list[Span]) -> list[_Piece]:
            return self._decode(audio.samples, chunk, splits_left=MAX_SPLITS)

        decoded = self._pool.map(decode, chunks) if self._pool else map(decode, chunks)
        pieces = [piece for chunk_pieces in decoded for piece in chunk_pieces if piece.text]
        if not pieces:
            raise NoSpeechError("no speech was recognised in the recording")
        total = sum(piece.seconds for piece in pieces)
        return RawTranscription(
            text=" ".join(piece.text for piece in pieces),
            mean_logprob=sum(p.seconds * p.logprob for p in pieces) / total,
            no_speech_prob=sum(p.seconds * p.no_speech for p in pieces) / total,
            speech_seconds=sum(end - begin for begin, end in spans) / SAMPLE_RATE,
        )

    def _decode(self, samples: AudioArray, chunk: list[Span], *, splits_left: int) -> list[_Piece]:
        """One chunk; if Whisper loops on it ("chichichi..."), its halves one by one."""
        piece = self._rescored(samples[chunk[0][0] : chunk[-1][1]]) if self._rescore else None
        pieces = (
            [piece] if piece is not None else self._whisper(samples[chunk[0][0] : chunk[-1][1]])
        )
        if splits_left > 0 and len(chunk) > 1 and (_looping_in(pieces) or _skipped(pieces, chunk)):
            middle = len(chunk) // 2
            log.info("Whisper looped on or skipped part of a %d-span chunk; halving", len(chunk))
            return self._decode(
                samples, chunk[:middle], splits_left=splits_left - 1
            ) + self._decode(samples, chunk[middle:], splits_left=splits_left - 1)
        return pieces

    def _whisper(self, samples: AudioArray) -> list[_Piece]:
        """faster-whisper's own decoding, with its temperature fallback."""
        segments, _ = self._model.transcribe(
            samples,
            language=LANGUAGE,
            beam_size=self._beam_size,
            initial_prompt=self._prompt,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        return [
            _Piece(
                text=segment.text.strip(),
                seconds=max(segment.end - segment.start, MIN_WEIGHT_SECONDS),
                logprob=segment.avg_logprob,
                no_speech=segment.no_speech_prob,
            )
            for segment in segments
        ]

    def _rescored(self, samples: AudioArray) -> _Piece | None:
        """The hypothesis the report language model likes best in a chest dictation, Whisper's
        own best elsewhere, or None where that looks broken (see :mod:`nbest`).

        With biasing, a quick greedy first look (:data:`FIRST_LOOK_BEAM`) finds the terms
        the chunk's odd words sound like (:mod:`biasing`), and the beam search then runs with
        them named in the prompt, unless that decoding looks broken or leaves words out
        (then it runs again with the plain prompt, rarely)."""
        encoded = nbest.encode(self._model, samples)
        terms: list[str] = []
        if self._bias:
            first = nbest.generate(
                self._model, encoded, prompt=self._prompt, beam_size=FIRST_LOOK_BEAM
            )
            if has_context(first.hypotheses[0].text):
                terms = biasing.sounding_terms(first.hypotheses[0].text)
        prompt = biasing.biased_prompt(self._prompt, terms) if terms else self._prompt
        found = nbest.generate(self._model, encoded, prompt=prompt, beam_size=self._beam_size)
        if terms and not _as_good(found, first):
            found = nbest.generate(
                self._model, encoded, prompt=self._prompt, beam_size=self._beam_size
            )
        if found.broken:
            return None
        chosen = found.hypotheses[0]
        if has_context(chosen.text):
            chosen = nbest.choose(found.hypotheses, report_logprob)
        return _Piece(
            text=chosen.text,
            seconds=max(len(samples) / SAMPLE_RATE, MIN_WEIGHT_SECONDS),
            logprob=chosen.logprob / (chosen.tokens + 1),
            no_speech=found.no_speech_prob,
        )


Span = tuple[int, int]  # sample range of one stretch of speech
MAX_SPLITS = 2
MIN_WORDS_PER_SECOND = 1.0
"""Dictation runs at 2 to 3 words a second; a chunk decoded to fewer than this was cut short."""
MIN_SKIP_SECONDS = 6.0
"""Shorter chunks are not checked for skipped speech (a slow phrase may be short of words)."""
MIN_WEIGHT_SECONDS = 0.01
# A syllable said six times in a row, or a word five times: Whisper stuck in a loop.
LOOP = re.compile(r"(\w{2,8}?)\1{5,}|\b(\w+)\b(?:\W+\2\b){4,}", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Piece:
    text: str
    seconds: float
    logprob: float
    no_speech: float


MIN_SECOND_WORDS = 0.85
"""A second decoding with fewer words than this share of the first's left some out."""


def _as_good(second: nbest.NBest, first: nbest.NBest) -> bool:
    """Whether the decoding with the terms named is sound: not broken, not looping, and not
    much shorter than the first (a prompt that lists words can make Whisper skip some)."""
    text = second.hypotheses[0].text
    words = len(first.hypotheses[0].text.split())
    return (
        not second.broken and not _looping(text) and len(text.split()) >= MIN_SECOND_WORDS * words
    )


def _looping(text: str) -> bool:
    return LOOP.search(text) is not None


def _looping_in(pieces: list[_Piece]) -> bool:
    return any(_looping(piece.text) for piece in pieces)


def _skipped(pieces: list[_Piece], chunk: list[Span]) -> bool:
    """Far fewer words than the speech in the chunk holds: Whisper left some of it out.

    On a long chunk tiny.en sometimes writes only its last sentence or two.
    """
    seconds = sum(end - begin for begin, end in chunk) / SAMPLE_RATE
    words = sum(len(piece.text.split()) for piece in pieces)
    return seconds >= MIN_SKIP_SECONDS and words < MIN_WORDS_PER_SECOND * seconds


def _chunks(spans: list[Span]) -> Iterator[list[Span]]:
    """Consecutive speech spans joined into chunks of at most CHUNK_SECONDS, cut at pauses;
    a last chunk shorter than :data:`TAIL_SECONDS` joins the one before it if the two fit in
    :data:`MAX_JOINED_SECONDS`."""
    limit = int(CHUNK_SECONDS * SAMPLE_RATE)
    chunks: list[list[Span]] = []
    chunk: list[Span] = []
    for span in spans:
        if chunk and span[1] - chunk[0][0] > limit:
            chunks.append(chunk)
            chunk = []
        chunk.append(span)
    if chunk:
        chunks.append(chunk)
    if len(chunks) > 1:
        tail, before = chunks[-1], chunks[-2]
        short = tail[-1][1] - tail[0][0] < TAIL_SECONDS * SAMPLE_RATE
        if short and tail[-1][1] - before[0][0] <= MAX_JOINED_SECONDS * SAMPLE_RATE:
            chunks[-2:] = [before + tail]
    yield from chunks
