"""Dictation transcription benchmark: word error rate and real-time factor per Whisper model.

Run from the repository root::

    .venv/bin/python bench/bench_transcribe.py                 # tiny.en and base, held-out set
    .venv/bin/python bench/bench_transcribe.py --models tiny.en --set development --show
    .venv/bin/python bench/bench_transcribe.py --set tuning --save raw.json --errors
    .venv/bin/python bench/bench_transcribe.py --replay raw.json --errors   # no Whisper

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
printed: on a shared machine it inflates wall-clock RTF, so CPU-time RTF (this
process and the espeak-ng runs it waits for) is printed beside it.  ``--no-bias``
turns off the second look at chest chunks (``app/speech/biasing.py``) for an
A/B.  ``--show`` prints every transcript and its word errors.

``--errors`` prints every word error (substitution, deletion, insertion) of raw
Whisper and of the corrected text, per clip and voice, the most frequent ones,
and which errors the corrections fixed or made.  ``--save`` writes Whisper's
raw text per clip; ``--replay`` scores such a file with today's corrections
without running Whisper (the n-best choice, which uses the report model, is
then the saved one).  Tune on ``development`` and ``tuning``; measure
``heldout`` once.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from radiology_dictations import SyntheticDictation, build_set  # noqa: E402
from whisper_normalizer.english import EnglishTextNormalizer  # noqa: E402

from app.speech.audio import DecodedAudio, decode_audio  # noqa: E402
from app.speech.context import ContextCorrector, chest_context_corrector  # noqa: E402
from app.speech.model import PACKAGED_MODELS, ModelError, ModelOptions  # noqa: E402
from app.speech.phonetic import PhoneticCorrector  # noqa: E402
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


@dataclass(frozen=True)
class WordError:
    """One aligned difference: ``kind`` is sub, del, ins (or sub+del / sub+ins for an uneven
    replacement, whose word counts are ``subs`` and ``extra``)."""

    kind: str
    said: str
    heard: str
    subs: int
    extra: int


def aligned_errors(reference: str, hypothesis: str) -> list[WordError]:
    """The word differences after the normaliser, aligned with difflib, with their kinds."""
    ref = normalise(reference).split()
    hyp = normalise(hypothesis).split()
    matcher = difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False)
    errors = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        said, heard = " ".join(ref[i1:i2]), " ".join(hyp[j1:j2])
        n, m = i2 - i1, j2 - j1
        if op == "delete":
            kind = "del"
        elif op == "insert":
            kind = "ins"
        elif n == m:
            kind = "sub"
        else:
            kind = "sub+del" if n > m else "sub+ins"
        errors.append(WordError(kind, said, heard, min(n, m), abs(n - m)))
    return errors


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
    steadier number.  It counts the espeak-ng runs that pronounce heard words.
    """
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), _cpu_seconds()
        transcriber.transcribe(audio)
        walls.append(time.perf_counter() - wall)
        cpus.append((_cpu_seconds() - cpu) / threads)
    return statistics.median(walls) / audio.duration, statistics.median(cpus) / audio.duration


def _cpu_seconds() -> float:
    """CPU time of this process and of the children it waited for (espeak-ng's
    pronunciations of heard words are part of the work)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


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
    saved: list[dict[str, str]] | None = None,
    bias: bool = True,
) -> dict[str, float]:
    options = ModelOptions(
        device="cpu",
        compute_type="int8",
        cpu_threads=max(1, threads // workers),
        workers=workers,
    )
    started = time.perf_counter()
    with_prompt = Transcriber.load(spec=model, cache_dir=cache, options=options, bias=bias)
    load_seconds = time.perf_counter() - started
    without_prompt = (
        Transcriber.load(spec=model, cache_dir=cache, options=options, prompt=None, bias=bias)
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
            if saved is not None:
                saved.append(
                    {**_clip_fields(clip), "model": model, "raw": transcript.raw_text}
                    | ({"no_prompt": plain_raw} if without_prompt else {})
                )
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


def _clip_fields(clip: Clip) -> dict[str, str]:
    return {"name": clip.name, "voice": clip.voice, "said": clip.said, "reference": clip.reference}


def uncorrected_report(raw_text: str) -> str:
    """Whisper's text in report form (measurements, spoken marks, commands, sections) with no
    word correction: the baseline the corrections are judged against."""
    plain = correct_transcript(
        raw_text,
        corrections=(),
        phonetic=PhoneticCorrector(terms=(), known=frozenset()),
        context=ContextCorrector(
            model=chest_context_corrector().model, candidates=(), protected=frozenset()
        ),
    )
    return plain.text


def error_table(records: Sequence[dict[str, str]], *, rows: bool) -> None:
    """Every word error of every clip, raw Whisper and corrected, and where they come from.

    Three stages are aligned: ``raw`` = Whisper against the words said; ``plain`` =
    Whisper's text in report form without word corrections, and ``corrected`` = the
    report text, both against the report meant.  Comparing the last two shows which
    errors the corrections fixed and which they made.
    """
    stages: dict[str, Counter[str]] = {}
    pairs: dict[str, Counter[tuple[str, str, str]]] = {}
    voices: dict[str, Counter[str]] = {}
    fixed: Counter[tuple[str, str]] = Counter()
    made: Counter[tuple[str, str]] = Counter()
    words = Counter[str]()
    if rows:
        print(f"\n{'model':<8} {'clip':<14} {'voice':<18} {'stage':<9} {'kind':<7} said -> heard")
    for record in records:
        corrected = correct_transcript(record["raw"]).text
        plain = uncorrected_report(record["raw"])
        per_stage = {
            "raw": aligned_errors(record["said"], record["raw"]),
            "plain": aligned_errors(record["reference"], plain),
            "corrected": aligned_errors(record["reference"], corrected),
        }
        words[record["model"]] += len(normalise(record["reference"]).split())
        for stage, errors in per_stage.items():
            key = f"{record['model']} {stage}"
            for error in errors:
                count = stages.setdefault(key, Counter())
                count[error.kind.split("+")[0]] += error.subs if error.subs else error.extra
                if "+" in error.kind:
                    count[error.kind.split("+")[1]] += error.extra
                pairs.setdefault(key, Counter())[(error.kind, error.said, error.heard)] += 1
                if stage == "corrected":
                    voices.setdefault(record["model"], Counter())[record["voice"]] += max(
                        len(error.said.split()), len(error.heard.split())
                    )
                if rows and stage != "plain":
                    print(
                        f"{record['model']:<8} {record['name']:<14} {record['voice']:<18} "
                        f"{stage:<9} {error.kind:<7} {error.said or '-'} -> {error.heard or '-'}"
                    )
        before = Counter((e.said, e.heard) for e in per_stage["plain"])
        after = Counter((e.said, e.heard) for e in per_stage["corrected"])
        fixed.update(before - after)
        made.update(after - before)
    print("\nword errors by kind (sub, del, ins), per stage; reference words per model:", words)
    for key, count in stages.items():
        print(f"  {key:<20} sub {count['sub']:>4}  del {count['del']:>4}  ins {count['ins']:>4}")
    for model, by_voice in voices.items():
        print(f"  {model} corrected errors by voice: {dict(sorted(by_voice.items()))}")
    for key, found in pairs.items():
        if key.endswith("plain"):
            continue
        print(f"\nmost frequent errors, {key} (count kind: said -> heard)")
        for (kind, said, heard), n in found.most_common(40):
            print(f"  {n:>3} {kind:<7} {said or '-'} -> {heard or '-'}")
    print("\nfixed by the corrections (plain error gone from corrected):", sum(fixed.values()))
    for (said, heard), n in fixed.most_common(25):
        print(f"  {n:>3} {said or '-'} -> {heard or '-'}")
    print("made by the corrections (corrected error not in plain):", sum(made.values()))
    for (said, heard), n in made.most_common(25):
        print(f"  {n:>3} {said or '-'} -> {heard or '-'}")


def replay(path: Path, *, rows: bool) -> int:
    """Score saved raw transcripts again with the current corrections (no Whisper)."""
    records = json.loads(path.read_text(encoding="utf-8"))
    for model in sorted({r["model"] for r in records}):
        mine = [r for r in records if r["model"] == model]
        for group, members in (
            ("radiology", [r for r in mine if r["name"] != "jfk"]),
            ("jfk", [r for r in mine if r["name"] == "jfk"]),
        ):
            raw, plain, corrected = Score(), Score(), Score()
            for r in members:
                raw.add(word_errors(r["said"], r["raw"]))
                plain.add(word_errors(r["reference"], uncorrected_report(r["raw"])))
                corrected.add(word_errors(r["reference"], correct_transcript(r["raw"]).text))
            print(
                f"{model} {group}: {len(members)} clips, WER raw {raw.wer:.1%}, "
                f"uncorrected report {plain.wer:.1%}, corrected {corrected.wer:.1%}"
            )
    error_table(records, rows=rows)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny.en,base", help="comma-separated model specs")
    parser.add_argument("--set", default="heldout", choices=("heldout", "development", "tuning"))
    parser.add_argument(
        "--count",
        type=int,
        default=None,
        help="dictations in the set (36 held out, 12 development, 12 tuning)",
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
    parser.add_argument(
        "--no-bias",
        action="store_true",
        help="no second decoding with the terms a chunk sounds like (app/speech/biasing.py)",
    )
    parser.add_argument("--show", action="store_true", help="print every transcript")
    parser.add_argument(
        "--errors", action="store_true", help="print every word error and where it comes from"
    )
    parser.add_argument("--save", type=Path, help="write each clip's raw transcript to this JSON")
    parser.add_argument(
        "--replay",
        type=Path,
        help="no Whisper: score the raw transcripts a --save wrote with today's corrections",
    )
    args = parser.parse_args(argv)
    if args.replay:
        return replay(args.replay, rows=args.errors)

    with tempfile.TemporaryDirectory(prefix="radscribe-bench-") as tmp:
        folder = Path(tmp)
        clips = synthesize(build_set(args.set, count=args.count), folder)
        jfk = jfk_clip(args.shared_data)
        if jfk is not None:
            clips.append(jfk)
        rows = {}
        saved: list[dict[str, str]] = []
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
                    saved=saved,
                    bias=not args.no_bias,
                )
            except ModelError as exc:
                print(f"{model}: skipped ({exc})")
    _report(rows, args, clips)
    if args.save:
        args.save.write_text(json.dumps(saved, indent=1), encoding="utf-8")
    if args.errors:
        error_table(saved, rows=True)
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
