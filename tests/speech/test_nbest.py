"""Whisper's n-best list, and the choice among it with the chest CT language model."""

from __future__ import annotations

from pathlib import Path

from app.speech import nbest
from app.speech.audio import decode_audio
from app.speech.nbest import Hypothesis, NBest
from app.speech.postprocess import report_logprob
from app.speech.transcriber import LANGUAGE, Transcriber


def _hypothesis(text: str, logprob: float) -> Hypothesis:
    return Hypothesis(text=text, logprob=logprob, tokens=len(text.split()) + 2)


def test_the_report_model_decides_a_close_call() -> None:
    whisper_best = _hypothesis("Scattered media still lymph nodes are not enlarged.", -4.0)
    second = _hypothesis("Scattered mediastinal lymph nodes are not enlarged.", -4.5)
    assert nbest.choose([whisper_best, second], report_logprob) == second


def test_whisper_keeps_a_clear_lead() -> None:
    """A hypothesis the audio clearly supports is not overruled by what reports usually say."""
    heard = _hypothesis("Small right pleural effusion.", -1.0)
    usual = _hypothesis("Small left pleural effusion.", -12.0)
    assert nbest.choose([heard, usual], report_logprob) == heard


def test_a_negation_is_not_dropped_for_a_likelier_sentence() -> None:
    """The word bonus: leaving out "no" does not make a hypothesis win."""
    said = _hypothesis("No pleural effusion or pneumothorax.", -3.0)
    shorter = _hypothesis("Pleural effusion or pneumothorax.", -3.2)
    assert nbest.choose([said, shorter], report_logprob) == said


def test_broken_decodes_are_left_to_whispers_fallback() -> None:
    looping = NBest((_hypothesis("the lung " * 40, -20.0),), no_speech_prob=0.0)
    unlikely = NBest((Hypothesis("Lobe.", logprob=-30.0, tokens=3),), no_speech_prob=0.0)
    fine = NBest((_hypothesis("No pleural effusion.", -2.0),), no_speech_prob=0.0)
    assert looping.broken and unlikely.broken and not fine.broken


def test_first_hypothesis_is_what_faster_whisper_writes(
    transcriber: Transcriber, chest_wav: Path
) -> None:
    """Real audio: the n-best decoding is faster-whisper's, so its best is the same text."""
    samples = decode_audio(chest_wav).samples
    model = transcriber._model
    found = nbest.decode(model, samples, prompt=transcriber._prompt, beam_size=5)
    segments, _ = model.transcribe(
        samples,
        language=LANGUAGE,
        beam_size=5,
        initial_prompt=transcriber._prompt,
        condition_on_previous_text=False,
        without_timestamps=True,
        vad_filter=False,
    )
    assert len(found.hypotheses) == nbest.HYPOTHESES
    assert found.hypotheses[0].text == " ".join(s.text.strip() for s in segments)
    assert 0.0 <= found.no_speech_prob <= 1.0
    assert all(h.logprob < 0 and h.tokens > 0 for h in found.hypotheses)


def test_a_chest_term_is_never_swapped_for_another() -> None:
    """ "spleen" said and heard stays, however much likelier "pleura" reads."""
    heard = _hypothesis("The liver and spleen are unremarkable.", -2.0)
    likelier = _hypothesis("The liver and pleura are unremarkable.", -2.1)
    assert nbest.choose([heard, likelier], report_logprob) == heard
    garbled = _hypothesis("Smooth interlobular septal thickening at the mesas.", -3.0)
    mended = _hypothesis("Smooth interlobular septal thickening at the bases.", -3.5)
    assert nbest.choose([garbled, mended], report_logprob) == mended
