"""Dictation transcription benchmark: word error rate and real-time factor per Whisper model.

Run from the repository root::

    .venv/bin/python bench/bench_transcribe.py                 # tiny.en and base, held-out set
    .venv/bin/python bench/bench_transcribe.py --models tiny.en --set development --show

Audio: ``jfk.flac`` from the shared data (reference from SOURCES.md) and chest CT
dictations synthesized with espeak-ng (six voices and speeds) from
``bench/radiology_dictations.py`` (the 36 held-out dictations by default; none
of their templates was used to write the lexicon or the context model).

Word error rate is computed after Whisper's English text normaliser (the
``whisper-normalizer`` package, dev extra; compared with openai/whisper's
``normalizers/english.py`` it adds four contractions (kinda, sorta, dunno,
cause) and lacks the newest step that glues currency symbols to numbers, none
of which occurs here), over the whole set.  Three columns
show what each layer adds: Whisper without the vocabulary prompt and with it
(both against the words actually said, "period" and "scratch that" included;
both with the n-best rescoring of ``app/speech/nbest.py``), and the corrected
report text against the report the radiologist meant.

Real-time factor is transcription time (everything after the audio is decoded:
voice activity detection, Whisper, corrections, quality; model load excluded)
over audio duration, on audio of 30 s or more: the first ``--rtf-clips``
synthesized dictations of 30 s or more (median over them) and
``vosk_dagon.wav`` (33.9 s of real read speech; its reference text has
deliberate errors, so it gives no WER).  Each clip is timed
``--repeats`` times and the median taken, on ``--threads`` CPU threads shared
by ``--workers`` Whisper workers (chunks decoded at once).  The load average is
printed: on a shared machine it inflates wall-clock RTF, so CPU-time RTF is
printed beside it.  ``--show`` prints every transcript and its word errors.
"""

from __future__ import annotations

import argparse
import difflib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from radiology_dictations import SyntheticDictation, build_set  # noqa: E402
from whisper_normalizer.english import EnglishTextNormalizer  # noqa: E402

from app.speech.audio import DecodedAudio, decode_audio  # noqa: E402
from app.speech.model import PACKAGED_MODELS, ModelError, ModelOptions  # noqa: E402
from app.speech.postprocess import correct_transcript  # noqa: E402
from app.speech.transcriber import Transcriber  # noqa: E402

JFK_REFERENCE = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
MIN_RTF_SECONDS = 30.0
RTF_SPEECH = "vosk_dagon.wav"
GOALS = {"rtf_tiny": 0.05, "wer_radiology": 0.05, "wer_jfk": 0.10}
DEFAULT_SHARED = REPO.parent / "shared" / "data"

normalise = EnglishTextNormalizer()


def word_differences(reference: str, hypothesis: str) -> list[str]:
    """The words that differ after the normaliser, as "said -> heard" lines."""
    ref = normalise(reference).split()
    hyp = normalise(hypothesis).split()
    matcher = difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False)
    return [
        f"{' '.join(ref[i1:i2]) or '(nothing)'} -> {' '.join(hyp[j1:j2]) or '(nothing)'}"
        for op, i1, i2, j1, j2 in matcher.get_opcodes()
        if op != "equal"
    ]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference words) after Whisper's normaliser."""
    ref = normalise(reference).split()
    hyp = normalise(hypothesis).split()
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, start=1):
            current[j] = min(
                previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)
            )
        previous = current
    return previous[-1], len(ref)


@dataclass(frozen=True)
class Clip:
    name: str
    audio: DecodedAudio
    said: str  # the words spoken
    reference: str  # the report meant
    voice: str = "recorded"  # espeak-ng voice and speed of a synthesized clip


@dataclass
class Score:
    errors: int = 0
    words: int = 0

    def add(self, counts: tuple[int, int]) -> None:
        self.errors += counts[0]
        self.words += counts[1]

    @property
    def wer(self) -> float:
        return self.errors / self.words if self.words else float("nan")


def synthesize(dictations: Sequence[SyntheticDictation], folder: Path) -> list[Clip]:
    clips = []
    for dictation in dictations:
        wav = folder / f"{dictation.name}.wav"
        subprocess.run(
            [
                "espeak-ng",
                "-v",
                dictation.voice,
                "-s",
                str(dictation.words_per_minute),
                "-w",
                str(wav),
                dictation.spoken,
            ],
            check=True,
        )
        audio = decode_audio(wav)
        voice = f"{dictation.voice} {dictation.words_per_minute} wpm"
        clips.append(Clip(dictation.name, audio, dictation.spoken, dictation.reference, voice))
    return clips


def jfk_clip(shared: Path) -> Clip | None:
    path = shared / "audio" / "jfk.flac"
    if not path.is_file():
        print(f"(no {path}: jfk.flac skipped)")
        return None
    return Clip("jfk", decode_audio(path), JFK_REFERENCE, JFK_REFERENCE)


def rtf_speech(shared: Path) -> DecodedAudio | None:
    path = shared / "audio" / RTF_SPEECH
    return decode_audio(path) if path.is_file() else None


def median_rtf(
    transcriber: Transcriber, audio: DecodedAudio, repeats: int, threads: int
) -> tuple[float, float]:
    """(wall-clock RTF, CPU-time RTF per thread), medians of ``repeats`` runs.

    The second is what the wall clock would read with ``threads`` cores to
    ourselves (a lower bound): on a machine shared with other work it is the
    steadier number.
    """
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        transcriber.transcribe(audio)
        walls.append(time.perf_counter() - wall)
        cpus.append((time.process_time() - cpu) / threads)
    return statistics.median(walls) / audio.duration, statistics.median(cpus) / audio.duration


def evaluate(
    model: str,
    clips: list[Clip],
    *,
    speech: DecodedAudio | None,
    threads: int,
    workers: int,
    repeats: int,
    cache: Path,
    show: bool,
    rtf_clips: int,
    bare: bool,
) -> dict[str, float]:
    options = ModelOptions(
        device="cpu",
        compute_type="int8",
        cpu_threads=max(1, threads // workers),
        workers=workers,
    )
    started = time.perf_counter()
    with_prompt = Transcriber.load(spec=model, cache_dir=cache, options=options)
    load_seconds = time.perf_counter() - started
    without_prompt = (
        Transcriber.load(spec=model, cache_dir=cache, options=options, prompt=None)
        if bare
        else None
    )
    results: dict[str, float] = {"load_s": load_seconds}
    groups = {
        "radiology": [c for c in clips if c.name != "jfk"],
        "jfk": [c for c in clips if c.name == "jfk"],
    }
    for group, members in groups.items():
        if not members:
            continue
        unprompted, prompted, corrected = Score(), Score(), Score()
        by_voice: dict[str, Score] = {}
        rtfs: list[tuple[float, float]] = []
        for clip in members:
            plain_raw = (
                without_prompt.transcribe_raw(clip.audio).text if without_prompt else "(skipped)"
            )
            transcript = with_prompt.transcribe(clip.audio)
            if without_prompt:
                unprompted.add(word_errors(clip.said, plain_raw))
            prompted.add(word_errors(clip.said, transcript.raw_text))
            counts = word_errors(clip.reference, correct_transcript(transcript.raw_text).text)
            corrected.add(counts)
            by_voice.setdefault(clip.voice, Score()).add(counts)
            if clip.audio.duration >= MIN_RTF_SECONDS and len(rtfs) < rtf_clips:
                rtfs.append(median_rtf(with_prompt, clip.audio, repeats, threads))
            if show:
                print(f"\n--- {model} {clip.name} ({clip.audio.duration:.1f} s)")
                print(f"said:      {clip.said}")
                print(f"no prompt: {plain_raw}")
                print(f"raw:       {transcript.raw_text}")
                print(f"corrected: {transcript.text!r}")
                print(f"reference: {clip.reference!r}")
                print(f"sections:  {transcript.sections}")
                print(f"quality:   {transcript.quality.to_dict()}")
                print(f"WER corrected: {word_errors(clip.reference, transcript.text)}")
                for line in word_differences(clip.reference, transcript.text):
                    print(f"  {line}")
        results[f"{group}_wer_no_prompt"] = unprompted.wer
        results[f"{group}_wer_prompt"] = prompted.wer
        results[f"{group}_wer_corrected"] = corrected.wer
        if group == "radiology":
            for voice, score in sorted(by_voice.items()):
                results[f"voice:{voice}"] = score.wer
        if rtfs:
            results[f"{group}_rtf"] = statistics.median(wall for wall, _ in rtfs)
            results[f"{group}_cpu_rtf"] = statistics.median(cpu for _, cpu in rtfs)
        results[f"{group}_audio_s"] = sum(c.audio.duration for c in members)
    if speech is not None:
        results["speech_rtf"], results["speech_cpu_rtf"] = median_rtf(
            with_prompt, speech, repeats, threads
        )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny.en,base", help="comma-separated model specs")
    parser.add_argument("--set", default="heldout", choices=("heldout", "development"))
    parser.add_argument(
        "--count", type=int, default=None, help="dictations in the set (36 held out, 12 dev)"
    )
    parser.add_argument(
        "--rtf-clips", type=int, default=8, help="dictations of >= 30 s timed for the RTF"
    )
    parser.add_argument(
        "--no-bare", action="store_true", help="skip the pass without the vocabulary prompt"
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for CTranslate2")
    parser.add_argument(
        "--workers", type=int, default=2, help="Whisper workers sharing the threads"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per clip for the RTF median")
    parser.add_argument("--shared-data", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--show", action="store_true", help="print every transcript")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="radscribe-bench-") as tmp:
        folder = Path(tmp)
        clips = synthesize(build_set(args.set, count=args.count), folder)
        jfk = jfk_clip(args.shared_data)
        if jfk is not None:
            clips.append(jfk)
        rows = {}
        for model in [m.strip() for m in args.models.split(",") if m.strip()]:
            try:
                rows[model] = evaluate(
                    model,
                    clips,
                    speech=rtf_speech(args.shared_data),
                    threads=args.threads,
                    workers=args.workers,
                    repeats=args.repeats,
                    cache=folder / "models",
                    show=args.show,
                    rtf_clips=args.rtf_clips,
                    bare=not args.no_bare,
                )
            except ModelError as exc:
                print(f"{model}: skipped ({exc})")
    _report(rows, args, clips)
    return 0


def _report(rows: dict[str, dict[str, float]], args: argparse.Namespace, clips: list[Clip]) -> None:
    radiology = [c for c in clips if c.name != "jfk"]
    seconds = sum(c.audio.duration for c in radiology)
    voices = sorted({f"{d.voice} {d.words_per_minute} wpm" for d in build_set(args.set)})
    timed = min(args.rtf_clips, sum(c.audio.duration >= MIN_RTF_SECONDS for c in radiology))
    print(
        f"\nset={args.set}: {len(radiology)} synthesized dictations, {seconds:.0f} s "
        f"(espeak-ng: {', '.join(voices)}); jfk.flac 11 s; threads={args.threads} "
        f"in {args.workers} workers; {timed} dictations timed; "
        f"load average (1, 5, 15 min) {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"RTF: wall clock, median of {args.repeats} runs per clip of >= {MIN_RTF_SECONDS:.0f} s, "
        f"model load excluded; CPU-RTF: CPU seconds / {args.threads} threads / audio seconds"
    )
    print(
        "WER after Whisper's English normaliser: 'no prompt' and 'prompt' = Whisper vs the words "
        "said; 'corrected' = report text vs the report meant"
    )
    columns = [  # (title, key, percent?)
        ("load s", "load_s", False),
        ("radiology WER: no prompt", "radiology_wer_no_prompt", True),
        ("prompt", "radiology_wer_prompt", True),
        ("corrected", "radiology_wer_corrected", True),
        ("RTF", "radiology_rtf", False),
        ("CPU-RTF", "radiology_cpu_rtf", False),
        ("jfk WER: no prompt", "jfk_wer_no_prompt", True),
        ("prompt", "jfk_wer_prompt", True),
        ("corrected", "jfk_wer_corrected", True),
        (f"RTF {RTF_SPEECH}", "speech_rtf", False),
        ("CPU-RTF", "speech_cpu_rtf", False),
    ]
    header = "model    " + " ".join(title for title, _, _ in columns)
    print(header)
    print("-" * len(header))
    for model, row in rows.items():
        cells = [f"{model:<8}"]
        for title, key, percent in columns:
            value = row.get(key, float("nan"))
            cells.append(f"{value:>{len(title)}.1%}" if percent else f"{value:>{len(title)}.3f}")
        print(" ".join(cells))
    goals = (
        f"goals: radiology WER (corrected) <= {GOALS['wer_radiology']:.0%}, jfk WER <= "
        f"{GOALS['wer_jfk']:.0%}, RTF <= {GOALS['rtf_tiny']} with tiny.en"
    )
    print(goals)
    for model, row in rows.items():
        voices = [f"{key[6:]} {wer:.1%}" for key, wer in row.items() if key.startswith("voice:")]
        if voices:
            print(f"{model} corrected radiology WER by voice: {'; '.join(voices)}")
    known = ", ".join(sorted(PACKAGED_MODELS))
    print(f"(packaged model names: {known}; any CTranslate2 Whisper directory works as a model)")


if __name__ == "__main__":
    raise SystemExit(main())
