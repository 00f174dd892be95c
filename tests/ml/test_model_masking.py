"""Absent modalities are masked: their content never changes the output, bit for bit."""

from __future__ import annotations

import pytest
import torch

from models.config import tiny_config
from models.networks.model import ModelBatch, ModelOutput, RadscribeModel, TextInput
from models.networks.text_encoder import TextTokenizer

FUSIONS = ["co-attention", "concat", "gated"]


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return TextTokenizer()


def _text(tokenizer: TextTokenizer, texts: list[str], present: list[bool]) -> TextInput:
    ids, mask = tokenizer(texts, max_tokens=32)
    return TextInput(present=torch.tensor(present), attention_mask=mask, token_ids=ids)


def _batch(emr: TextInput, dictation: TextInput) -> ModelBatch:
    generator = torch.Generator().manual_seed(1)
    return ModelBatch(
        image=torch.randn(2, 1, 64, 64, 48, generator=generator),
        image_quality=torch.rand(2, 6, generator=generator),
        emr=emr,
        dictation=dictation,
        dictation_quality=torch.tensor([[0.9, 0.05, 0.5], [0.4, 0.6, 0.1]]),
    )


def _outputs(output: ModelOutput) -> list[torch.Tensor]:
    return [
        output.finding_logits,
        output.finding_probabilities,
        output.evidence,
        output.modality_weights,
        output.nodule_map,
    ]


def _model(fusion: str, **config: float) -> RadscribeModel:
    torch.manual_seed(0)
    model = RadscribeModel(tiny_config(fusion_method=fusion, **config)).eval()
    # Open the gated cross-attention (it starts closed) so text can matter at all.
    for block in model.fusion.image_blocks:
        if block.gate is not None:
            block.gate.data.fill_(1.0)
    return model


@pytest.mark.parametrize("fusion", FUSIONS)
def test_absent_text_content_does_not_change_the_output(
    fusion: str, tokenizer: TextTokenizer
) -> None:
    model = _model(fusion)
    dictation = _text(tokenizer, ["nodule right upper lobe", "no effusion"], [True, True])
    # Study 0 has an EMR text; study 1's EMR is absent, with two different contents.
    first = _text(tokenizer, ["smoker with cough", "anything at all"], [True, False])
    second = _text(
        tokenizer, ["smoker with cough", "a completely different long history text"], [True, False]
    )
    with torch.inference_mode():
        a = model(_batch(first, dictation))
        b = model(_batch(second, dictation))
    for x, y in zip(_outputs(a), _outputs(b), strict=True):
        assert torch.equal(x, y)
    assert float(a.modality_weights[1, 1]) == 0.0 and float(a.modality_weights[0, 1]) > 0.0


@pytest.mark.parametrize("fusion", FUSIONS)
def test_present_text_content_does_change_the_output(fusion: str, tokenizer: TextTokenizer) -> None:
    """The control: without it the test above could pass with text ignored altogether."""
    model = _model(fusion)
    dictation = _text(tokenizer, ["nodule right upper lobe", "no effusion"], [True, True])
    first = _text(tokenizer, ["smoker with cough", "history one"], [True, True])
    second = _text(tokenizer, ["smoker with cough", "a different history"], [True, True])
    with torch.inference_mode():
        a = model(_batch(first, dictation))
        b = model(_batch(second, dictation))
    assert torch.equal(a.finding_logits[0], b.finding_logits[0])
    assert not torch.equal(a.finding_logits[1], b.finding_logits[1])


def test_absent_precomputed_embeddings_are_ignored_too(tokenizer: TextTokenizer) -> None:
    model = _model("co-attention")
    ids, mask = tokenizer(["smoker", "history"], max_tokens=32)
    embeddings = model.encode_text(ids, mask)
    present = torch.tensor([True, False])
    dictation = TextInput.absent(2)
    noisy = embeddings.clone()
    noisy[1] = torch.randn_like(noisy[1]) * 100
    with torch.inference_mode():
        a = model(
            _batch(
                TextInput(present=present, attention_mask=mask, embeddings=embeddings), dictation
            )
        )
        b = model(
            _batch(TextInput(present=present, attention_mask=mask, embeddings=noisy), dictation)
        )
        from_ids = model(
            _batch(TextInput(present=present, attention_mask=mask, token_ids=ids), dictation)
        )
    assert torch.equal(a.finding_logits, b.finding_logits)
    # Precomputed embeddings give the same result as running the frozen encoder.
    assert torch.allclose(a.finding_logits, from_ids.finding_logits, atol=1e-5)


def test_every_modality_combination_gives_finite_outputs(tokenizer: TextTokenizer) -> None:
    model = _model("co-attention")
    for emr_on in (False, True):
        for dictation_on in (False, True):
            emr = _text(tokenizer, ["history", "history"], [emr_on, emr_on])
            dictation = _text(tokenizer, ["dictation", "dictation"], [dictation_on, dictation_on])
            with torch.inference_mode():
                out = model(_batch(emr, dictation))
            for tensor in _outputs(out):
                assert torch.isfinite(tensor).all()
            weights = out.modality_weights
            assert bool((weights[:, 1] > 0).all()) == emr_on
            assert bool((weights[:, 2] > 0).all()) == dictation_on
            assert bool((weights[:, 0] > 0).all())


def test_modality_dropout_hides_texts_only_in_training() -> None:
    torch.manual_seed(0)
    model = RadscribeModel(tiny_config(modality_dropout=0.5))
    present = torch.ones(4000, dtype=torch.bool)
    model.train()
    kept = model._drop_modalities(present).float().mean().item()
    assert 0.45 < kept < 0.55
    model.eval()
    assert bool(model._drop_modalities(present).all())


def test_poor_dictation_quality_moves_the_dictation_weight(tokenizer: TextTokenizer) -> None:
    """The gate reads the quality inputs (one path set by hand: no-speech lowers the weight)."""
    model = _model("concat")
    no_speech_input = 6 + 2 + 2 + 1  # image quality, EMR (2), dictation on/length, confidence
    with torch.no_grad():
        first, final = model.gate.net[0], model.gate.net[2]
        first.weight.zero_()
        first.bias.zero_()
        first.weight[0, no_speech_input] = 4.0
        final.weight.zero_()
        final.weight[2, 0] = -2.0
    batch = _batch(TextInput.absent(2), _text(tokenizer, ["nodule", "nodule"], [True, True]))
    batch.dictation_quality = torch.tensor([[0.9, 0.0, 1.0], [0.9, 0.9, 1.0]])
    with torch.inference_mode():
        weights = model(batch).modality_weights
    assert float(weights[1, 2]) < 0.5 * float(weights[0, 2])


@pytest.mark.parametrize("fusion", FUSIONS)
def test_image_only_logits_are_the_prediction_with_both_texts_hidden(
    fusion: str, tokenizer: TextTokenizer
) -> None:
    """Training's image-only auxiliary output is exactly the forward with no texts, so its
    loss teaches the image pathway what the image alone must show."""
    model = _model(fusion, modality_dropout=0.0)
    emr = _text(tokenizer, ["smoker with cough", "history of cancer"], [True, True])
    dictation = _text(tokenizer, ["nodule right upper lobe", "no effusion"], [True, True])
    model.train()
    model.image_only_aux = True
    with torch.no_grad():
        with_texts = model(_batch(emr, dictation))
        without_texts = model(_batch(TextInput.absent(2), TextInput.absent(2)))
    assert with_texts.image_only_logits is not None
    assert torch.allclose(with_texts.image_only_logits, without_texts.finding_logits, atol=1e-5)
    assert not torch.allclose(with_texts.finding_logits, without_texts.finding_logits, atol=1e-3)
    model.eval()
    with torch.no_grad():
        assert model(_batch(emr, dictation)).image_only_logits is None
