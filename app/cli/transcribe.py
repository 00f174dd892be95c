"""`radscribe transcribe AUDIO [--model DIR] [--json]`: transcribe one dictation file.

Prints the corrected report text, its sections and the quality signals; with
``--json`` one JSON object that also holds Whisper's uncorrected text.  Nothing
is stored.  Bad audio or a missing model ends with a message and a non-zero
exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.core.settings import Settings

EXIT_OK = 0
EXIT_BAD_AUDIO = 3
EXIT_NO_MODEL = 4


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "transcribe", help="transcribe a dictation (WAV, FLAC, MP3, OGG, WebM) with Whisper"
    )
    parser.add_argument("audio", type=Path, help="the dictation audio file")
    parser.add_argument(
        "--model",
        help="Whisper model: a CTranslate2 directory, split-model directories joined by ':', "
        "or a packaged name (tiny.en, base); default: RADSCRIBE_WHISPER_MODEL_DIR or tiny.en",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run_transcribe)


def run_transcribe(args: argparse.Namespace, settings: Settings) -> int:
    from app.services.dictation import make_transcriber
    from app.speech.audio import AudioError, decode_audio
    from app.speech.model import ModelError

    if args.model:
        settings = settings.model_copy(update={"whisper_model_dir": Path(args.model)})
    try:
        audio = decode_audio(args.audio, max_seconds=settings.dictation_max_seconds)
        transcriber = make_transcriber(settings)
        transcript = transcriber.transcribe(audio)
    except AudioError as exc:
        print(f"radscribe transcribe: {args.audio}: {exc}", file=sys.stderr)
        return EXIT_BAD_AUDIO
    except ModelError as exc:
        print(f"radscribe transcribe: {exc}", file=sys.stderr)
        return EXIT_NO_MODEL

    quality = transcript.quality.to_dict()
    if args.json:
        payload = {
            "text": transcript.text,
            "raw_text": transcript.raw_text,
            "sections": transcript.sections,
            "quality": quality,
            "model": transcript.model_name,
            "duration_seconds": round(transcript.duration, 3),
        }
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        return EXIT_OK
    print(transcript.text)
    print()
    for name, text in transcript.sections.items():
        print(f"[{name}]")
        print(text)
        print()
    print(
        f"model {transcript.model_name}, {transcript.duration:.1f} s audio, "
        f"{quality['speech_seconds']:.1f} s speech"
    )
    print(
        f"confidence {quality['confidence']:.2f}  mean log-prob {quality['mean_logprob']:.3f}  "
        f"no-speech {quality['no_speech_prob']:.3f}  SNR {quality['snr_db']:.1f} dB"
    )
    return EXIT_OK
