"""Synthetic chest CT dictations for the transcription benchmark.

Three sets are built from disjoint sets of sentence templates:

- ``development``: the templates whose transcripts were read to write the
  corrections in ``app/speech/lexicon.py`` and the report sentences the
  context model (``app/speech/context.py``) learns from;
- ``tuning``: templates written later from chest CT practice and kept out of
  the corrections and the corpus, to tune general methods on wording they
  have not seen (12 dictations);
- ``heldout``: other templates, used for nothing but the benchmark's word
  error rate (36 dictations by default); the goal is measured on these.

Each template has slots; a slot value is a pair (what the radiologist says,
what the report writes), so every dictation comes with its spoken text (fed to
espeak-ng) and its reference report text.  Half the dictations say their
punctuation ("period", "comma"); some use "scratch that" and "new paragraph".
Dictations rotate through six espeak-ng voices and speeds (:data:`VOICES`).
Everything is seeded, so a set is the same on every run.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

Pair = tuple[str, str]  # (spoken, written)

SIZES_MM: list[Pair] = [
    ("three", "3"), ("four", "4"), ("five", "5"), ("six", "6"), ("seven", "7"), ("eight", "8"),
    ("nine", "9"), ("eleven", "11"), ("twelve", "12"), ("fourteen", "14"), ("eighteen", "18"),
    ("twenty", "20"), ("twenty three", "23"),
]  # fmt: skip
SIZES_CM: list[Pair] = [
    ("one point two", "1.2"), ("one point five", "1.5"), ("two point three", "2.3"),
    ("three", "3"), ("four point one", "4.1"), ("two", "2"), ("five point five", "5.5"),
]  # fmt: skip
MONTHS: list[Pair] = [("three", "3"), ("six", "6"), ("twelve", "12")]
HU: list[Pair] = [("ten", "10"), ("fifteen", "15"), ("thirty five", "35"), ("sixty", "60")]
LOBES = [
    "right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe",
    "left lower lobe", "lingula",
]  # fmt: skip
SIDES = ["right", "left"]
NODULE_TYPES = ["solid", "part solid", "ground glass", "calcified", "spiculated", "subpleural"]
STATIONS = ["subcarinal", "right paratracheal", "left hilar", "prevascular", "right hilar"]
ORGANS = ["liver", "left kidney", "right kidney", "spleen"]
DIAGNOSES = ["pneumonia", "pulmonary edema", "aspiration", "atelectasis", "fibrosis"]


def _same(words: list[str]) -> list[Pair]:
    return [(word, word) for word in words]


def _units(sizes: list[Pair], spoken_unit: str, written_unit: str) -> list[Pair]:
    return [(f"{s} {spoken_unit}", f"{w} {written_unit}") for s, w in sizes]


def _dims(sizes: list[Pair], spoken_unit: str, written_unit: str) -> list[Pair]:
    pairs = []
    for index, (s1, w1) in enumerate(sizes):
        s2, w2 = sizes[(index + 3) % len(sizes)]
        pairs.append((f"{s1} by {s2} {spoken_unit}", f"{w1} x {w2} {written_unit}"))
    return pairs


SLOTS: dict[str, list[Pair]] = {
    "mm": _units(SIZES_MM, "millimeter", "mm"),
    "mms": _units(SIZES_MM, "millimeters", "mm"),
    "cm": _units(SIZES_CM, "centimeters", "cm"),
    "dims_mm": _dims(SIZES_MM, "millimeters", "mm"),
    "dims_cm": _dims(SIZES_CM, "centimeters", "cm"),
    "months": _units(MONTHS, "months", "months"),
    "hu": _units(HU, "Hounsfield units", "HU"),
    "lobe": _same(LOBES),
    "side": _same(SIDES),
    "Side": _same([side.capitalize() for side in SIDES]),
    "ntype": _same(NODULE_TYPES),
    "Ntype": _same([kind.capitalize() for kind in NODULE_TYPES]),
    "station": _same(STATIONS),
    "organ": _same(ORGANS),
    "diagnosis": _same(DIAGNOSES),
}

# Sentences end with "." and may hold ","; a spoken-punctuation dictation says them.
DEVELOPMENT_FINDINGS = [
    "There is a {mm} {ntype} nodule in the {lobe}.",
    "No pleural effusion or pneumothorax.",
    "Small {side} pleural effusion with adjacent compressive atelectasis.",
    "The heart is normal in size. No pericardial effusion.",
    "Mediastinal and hilar lymph nodes are not enlarged.",
    "Mild centrilobular emphysema in the upper lobes.",
    "A {station} lymph node measures {dims_mm}.",
    "Coronary artery calcifications are present.",
    "Degenerative changes of the thoracic spine.",
    "Consolidation in the {lobe} with air bronchograms.",
    "Patchy ground glass opacities in both lungs.",
    "The central airways are patent.",
    "A {cm} cyst in the {organ} measures {hu}.",
    "Stable {mm} nodule in the {lobe}, unchanged from the prior study.",
    "{Side} lower lobe bronchiectasis with mucus plugging.",
    "Moderate cardiomegaly.",
    "The main pulmonary artery measures {cm}.",
    "An enlarged {station} lymph node measures {mms}.",
    "Small sliding hiatal hernia.",
    "Mosaic attenuation of the lungs suggests air trapping.",
    "Peribronchial thickening in both lower lobes.",
    "Subsegmental atelectasis at the lung bases.",
    "Calcified granuloma in the {lobe}.",
    "Mild calcification of the aortic wall.",
    "A central venous catheter terminates in the superior vena cava.",
    "Fibrotic changes with traction bronchiectasis in the lower lobes.",
    "Smooth interlobular septal thickening at the bases.",
    "No axillary or supraclavicular lymphadenopathy.",
    "Multilevel degenerative disc disease.",
]
DEVELOPMENT_IMPRESSION = [
    "{mm} {lobe} pulmonary nodule. Recommend follow up CT in {months}.",
    "No acute cardiopulmonary abnormality.",
    "{Side} pleural effusion.",
    "Emphysema.",
    "Consolidation in the {lobe}, likely {diagnosis}.",
    "Cardiomegaly without pericardial effusion.",
    "Mediastinal lymphadenopathy, likely reactive.",
    "Bronchiectasis with mucus plugging.",
]
# Held out until 2026-11: their transcripts were read when the limits of the
# word-by-word lexicon were studied ("order" for "aorta"), so they count as
# development now.
DEVELOPMENT_TECHNIQUE = [
    "Axial images of the chest were obtained without intravenous contrast.",
    "Helical CT of the chest with intravenous contrast.",
]
DEVELOPMENT_FINDINGS += [
    "A {ntype} nodule in the {lobe} measures {mms}.",
    "The lungs are clear without focal consolidation.",
    "There is a {dims_cm} mass in the {lobe} abutting the pleura.",
    "Trace {side} pleural fluid is noted.",
    "Mild bronchial wall thickening in the lower lobes.",
    "The ascending aorta measures {cm} in diameter.",
    "Scattered mediastinal lymph nodes, the largest measuring {mms} in short axis.",
    "A hypodense lesion in the {organ} measures {hu}, likely a cyst.",
    "No pneumothorax. The visualized upper abdomen is unremarkable.",
    "Bibasilar atelectasis. No suspicious pulmonary nodules.",
    "Interlobular septal thickening with subpleural reticulation.",
    "Moderate hiatal hernia.",
]
DEVELOPMENT_IMPRESSION += [
    "{Ntype} nodule in the {lobe}, {mms}. Follow up CT in {months} is recommended.",
    "Findings compatible with {diagnosis}.",
    "No evidence of pulmonary embolism.",
    "Small {side} pleural effusion, new since the prior examination.",
]

# Held out: written for the benchmark only.  No correction, vocabulary word or
# language-model sentence was made from them or from their transcripts
# (tests/speech/test_vocabulary.py and test_context.py check what can be checked).
HELDOUT_TECHNIQUE = [
    "CT angiography of the chest was performed after intravenous contrast.",
    "Contiguous axial images were acquired through the chest without contrast.",
    "Low dose CT of the chest for lung cancer screening.",
]
HELDOUT_FINDINGS = [
    "The trachea and mainstem bronchi are clear.",
    "A {mms} pulmonary nodule is seen along the {side} major fissure.",
    "No suspicious mass or lymphadenopathy in the mediastinum.",
    "The thyroid gland is unremarkable.",
    "Dependent atelectasis in both lower lobes.",
    "There is a {dims_cm} soft tissue mass in the {lobe} with spiculated margins.",
    "The pulmonary arteries are normal in caliber without filling defects.",
    "Severe emphysema with large apical bullae.",
    "The {organ} appears normal.",
    "Tree in bud opacities in the {lobe} suggest infectious bronchiolitis.",
    "A {side} chest tube is in place with no residual pneumothorax.",
    "Honeycombing at the lung bases with traction bronchiectasis.",
    "The esophagus is mildly dilated and fluid filled.",
    "Healed fractures of the {side} posterior ribs.",
    "An endotracheal tube terminates {cm} above the carina.",
    "Diffuse ground glass opacity with a crazy paving pattern.",
    "Small pericardial effusion without tamponade.",
    "There is a {mms} {ntype} nodule abutting the {side} hemidiaphragm.",
    "The aortic root is dilated, measuring {cm}.",
    "Enlarged {station} lymph nodes, the largest {dims_mm}.",
    "Cavitary lesion in the {lobe} with an air fluid level.",
    "Moderate {side} pleural effusion layering dependently.",
    "Emphysematous changes are most pronounced in the upper lobes.",
    "A nasogastric tube courses into the stomach.",
    "The lungs demonstrate extensive reticular opacities.",
    "No acute fracture of the thoracic spine.",
    "Atherosclerotic plaque in the descending thoracic aorta.",
    "The pulmonary veins drain normally into the left atrium.",
    "A {cm} hypoattenuating adrenal nodule, likely an adenoma.",
    "Paraseptal emphysema along the anterior lung margins.",
    "There is no pericardial thickening.",
    "Compression deformity of a lower thoracic vertebral body.",
    "The {lobe} is partially collapsed.",
    "Scattered calcified mediastinal lymph nodes from prior granulomatous disease.",
    "Pacemaker leads terminate in the right atrium and right ventricle.",
    "Bilateral pulmonary emboli in the segmental arteries.",
]
HELDOUT_IMPRESSION = [
    "Spiculated {lobe} mass, suspicious for malignancy.",
    "Acute pulmonary embolism without right heart strain.",
    "Findings most consistent with multifocal pneumonia.",
    "Stable pulmonary nodules, no further imaging needed.",
    "Moderate emphysema and chronic bronchitis.",
    "Interval decrease in the size of the {side} pleural effusion.",
    "Tubes and lines in satisfactory position.",
    "Mildly enlarged {station} lymph node, nonspecific.",
    "No acute abnormality of the chest.",
    "Pulmonary fibrosis with a usual interstitial pneumonia pattern.",
    "Compression fracture of the thoracic spine of uncertain age.",
    "{Side} lower lobe collapse.",
]
# Tuning: written in 2026-11, after the held-out templates had been read, from chest CT
# practice, with no word that only the held-out templates use and no sentence in the
# context model's corpus (tests/speech/test_vocabulary.py checks both).  Like the held-out
# set, the corrections have not seen them; unlike it, methods may be tuned on them (their
# terms are vocabulary words the corpus lacks, which is what the held-out set needs).
TUNING_TECHNIQUE = [
    "Noncontrast CT of the chest with coronal reconstructions.",
    "CT angiogram of the chest with sagittal reformats.",
]
TUNING_FINDINGS = [
    "A {mms} irregular nodule in the {lobe} is indeterminate.",
    "The bronchovascular bundles are unremarkable.",
    "There is a {cm} cavity in the {lobe} with an irregular wall.",
    "Small {side} hydropneumothorax.",
    "Thrombus in the {side} main pulmonary artery.",
    "Mild cardiac enlargement without pericardial effusion.",
    "Lobulated {cm} mass in the {organ}.",
    "Subsolid nodule in the {lobe} measuring {mms}.",
    "Circumscribed hypodense lesions in the liver, likely cysts.",
    "No hilar or axillary adenopathy.",
    "The sternotomy wires are intact.",
    "Lymphangitic spread of tumor in the {lobe}.",
    "Scarring at the lung apices.",
    "Minimal subsegmental atelectasis in the lingula.",
    "A port catheter is present in the {side} chest wall.",
    "Osteophytes of the thoracic spine.",
    "Gallbladder stones, compatible with cholelithiasis.",
    "Hepatic steatosis.",
    "Confluent consolidation in the {lobe} with a small parapneumonic effusion.",
    "Nodular thickening of the {side} pleura.",
    "The esophageal wall is thickened.",
    "Sclerotic lesion in a thoracic vertebra measures {mms}.",
    "Enhancing {cm} mass in the {organ}.",
    "Endobronchial lesion narrowing the {side} lower lobe bronchus.",
]
TUNING_IMPRESSION = [
    "Indeterminate {mms} nodule in the {lobe}. Recommend PET CT.",
    "Findings suggestive of lymphangitic carcinomatosis.",
    "Small {side} hydropneumothorax.",
    "Metastatic disease to the {organ}.",
    "Unchanged scarring at the lung apices.",
    "Hepatic steatosis, otherwise unremarkable.",
    "Probable benign cysts in the liver.",
    "No thoracic aortic aneurysm or dissection.",
]
# Said and then taken back with "scratch that"; never in a reference.
RETRACTED = [
    "The heart is enlarged.",
    "There is a large right pleural effusion.",
]

FINDINGS_PER_DICTATION = 7
IMPRESSIONS_PER_DICTATION = 2
DICTATIONS_PER_SET = {"development": 12, "heldout": 36, "tuning": 12}
VOICES: tuple[tuple[str, int], ...] = (
    ("en-us", 150),
    ("en-gb-x-rp", 140),
    ("en-us+f3", 165),
    ("en-gb", 160),
    ("en-us+m3", 175),
    ("en-us-nyc", 155),
)
"""(espeak-ng voice, words a minute): dictation n is spoken by voice n mod 6."""
SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class SyntheticDictation:
    name: str
    spoken: str  # text for espeak-ng
    reference: str  # the report text the radiologist meant
    sections: dict[str, str]
    voice: str = VOICES[0][0]
    words_per_minute: int = VOICES[0][1]


def build_set(name: str, *, count: int | None = None) -> list[SyntheticDictation]:
    if name == "development":
        technique = DEVELOPMENT_TECHNIQUE
        findings, impression, seed = DEVELOPMENT_FINDINGS, DEVELOPMENT_IMPRESSION, 11
    elif name == "heldout":
        technique = HELDOUT_TECHNIQUE
        findings, impression, seed = HELDOUT_FINDINGS, HELDOUT_IMPRESSION, 23
    elif name == "tuning":
        technique = TUNING_TECHNIQUE
        findings, impression, seed = TUNING_FINDINGS, TUNING_IMPRESSION, 37
    else:
        raise ValueError(f"unknown set {name!r} (development, tuning or heldout)")
    rng = random.Random(seed)
    total = DICTATIONS_PER_SET[name] if count is None else count
    return [
        _dictation(f"{name}-{number}", rng, technique, findings, impression, number)
        for number in range(1, total + 1)
    ]


def _fill(template: str, rng: random.Random) -> Pair:
    spoken, written = template, template
    for slot in SLOT.findall(template):
        say, write = rng.choice(SLOTS[slot])
        spoken = spoken.replace("{" + slot + "}", say, 1)
        written = written.replace("{" + slot + "}", write, 1)
    written = written[:1].upper() + written[1:]
    return spoken[:1].upper() + spoken[1:], written


def _say_punctuation(text: str) -> str:
    text = re.sub(r",", " comma,", text)
    return re.sub(r"\.(\s|$)", r" period.\1", text)


def _dictation(
    name: str,
    rng: random.Random,
    technique: list[str],
    findings: list[str],
    impression: list[str],
    number: int,
) -> SyntheticDictation:
    says_punctuation = number % 2 == 0
    spoken_parts: list[str] = []
    sections: dict[str, list[str]] = {}

    def add_section(title: str, sentences: list[Pair], *, retract: bool = False) -> None:
        spoken_parts.append(f"{title}.")
        for index, (spoken, written) in enumerate(sentences):
            if retract and index == 1:
                wrong = rng.choice(RETRACTED)
                spoken_parts.append(_say(wrong, says_punctuation) + " Scratch that.")
            if says_punctuation and index == len(sentences) // 2 and len(sentences) > 3:
                spoken_parts.append("New paragraph.")
            spoken_parts.append(_say(spoken, says_punctuation))
            sections.setdefault(title.lower(), []).append(written)

    if technique and number % 3 == 0:
        add_section("Technique", [_fill(rng.choice(technique), rng)])
    add_section(
        "Findings",
        [_fill(t, rng) for t in rng.sample(findings, FINDINGS_PER_DICTATION)],
        retract=number % 3 == 1,
    )
    add_section(
        "Impression", [_fill(t, rng) for t in rng.sample(impression, IMPRESSIONS_PER_DICTATION)]
    )
    joined = {title: " ".join(sentences) for title, sentences in sections.items()}
    reference = "\n\n".join(f"{title.capitalize()}: {text}" for title, text in joined.items())
    voice, words_per_minute = VOICES[(number - 1) % len(VOICES)]
    return SyntheticDictation(
        name=name,
        spoken=" ".join(spoken_parts),
        reference=reference,
        sections=joined,
        voice=voice,
        words_per_minute=words_per_minute,
    )


def _say(sentence: str, says_punctuation: bool) -> str:
    return _say_punctuation(sentence) if says_punctuation else sentence
