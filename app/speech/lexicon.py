"""Radiology vocabulary for Whisper: the prompt that biases it, fixes for what it still mishears.

The prompt is report text in the style we want back (digits and units, section
words, chest CT terms, dictation commands); Whisper continues in the style of
its prompt, so it writes "6 mm", "pleural effusion" and "scratch that" far
more often.  The corrections were made from the errors tiny.en and base make on
synthesized chest CT dictations (the development set in
``bench/radiology_dictations.py``); the benchmark measures them on dictations
built from other sentence templates (``tests/speech/test_vocabulary.py`` keeps
the two apart).

A correction marked ``needs_context`` applies only where the transcript is
about the chest (:func:`has_context`), so "module" stays "module" elsewhere.
Words Whisper invents that no correction names are handled in general by
:mod:`app.speech.phonetic`, against the chest CT vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VOCABULARY_PROMPT = (
    "Chest CT report. Findings: Lungs: 6 mm solid pulmonary nodule in the right upper lobe; "
    "ground-glass opacity; consolidation with air bronchograms; atelectasis; centrilobular "
    "emphysema; bronchiectasis; peribronchial thickening; interlobular septal thickening; mosaic "
    "attenuation; pulmonary fibrotic sequela. Pleura: pleural effusion, pneumothorax. "
    "Mediastinum: hilar, subcarinal and paratracheal lymph nodes, lymphadenopathy. Heart: "
    "cardiomegaly, pericardial effusion, coronary artery calcifications, arterial wall "
    "calcification. Hiatal hernia. Degenerative changes of the thoracic spine. Cyst, 15 "
    "Hounsfield units. Impression: 6 x 4 mm nodule. Follow-up CT in 12 months. "
    "Scratch that. New paragraph."
)
"""Report text in the style we want back; its terms are the 18 findings Radscribe predicts
(``models.findings``) with the chest CT anatomy and descriptors around them.  The dictation
commands at its end let Whisper write them as said (without them tiny.en heard "scratch
that" as "crash-hat").  A prompt written as a dictation throughout (spoken "comma" and
"period") was tried: as good on average, but Whisper then dropped the pause after a section
word that no "period" followed ("Impression normal chest CT"), so the heading was lost.
At most :data:`PROMPT_MAX_TOKENS` tokens: Whisper keeps only the last half of its context
for a prompt."""

PROMPT_MAX_TOKENS = 223
"""Whisper's context is 448 tokens; faster-whisper keeps the last 448 // 2 - 1 of a prompt."""

CONTEXT_WORDS = frozenset(
    [
        "chest",
        "lung",
        "lungs",
        "lobe",
        "lobes",
        "pleural",
        "pleura",
        "pulmonary",
        "thorax",
        "thoracic",
        "mediastinal",
        "mediastinum",
        "hilar",
        "airway",
        "airways",
        "bronchial",
        "bronchiectasis",
        "effusion",
        "pneumothorax",
        "emphysema",
        "atelectasis",
        "consolidation",
        "ct",
        "nodule",
        "nodules",
        "opacity",
        "opacities",
        "lingula",
        "heart",
        "cardiomegaly",
        "pericardial",
        "aorta",
        "aortic",
        "artery",
        "arteries",
        "calcification",
        "calcifications",
        "calcified",
        "coronary",
        "lymph",
        "lymphadenopathy",
        "catheter",
        "vena",
        "hernia",
        "granuloma",
    ]
)
_WORD = re.compile(r"[a-z]+")


def has_context(text: str) -> bool:
    """Whether the dictation is about the chest (so chest-only corrections apply)."""
    return any(word in CONTEXT_WORDS for word in _WORD.findall(text.lower()))


@dataclass(frozen=True, slots=True)
class Correction:
    """Replace what ``pattern`` matches (case-insensitive, whole words) with ``right``."""

    pattern: re.Pattern[str]
    right: str
    needs_context: bool = False


PLEURAL_EFFUSION = "pleural effusion"
_UNIT = r"(?:millimet(?:er|re)s?|centimet(?:er|re)s?|mm|cm)"


def _fix(wrong: str, right: str, *, chest: bool = False, before: str | None = None) -> Correction:
    """``wrong`` is a regex over words; ``before`` a regex that must follow (not replaced)."""
    lookahead = rf"(?=[\s,-]+{before}\b)" if before else ""
    pattern = re.compile(rf"\b{wrong}\b{lookahead}", re.IGNORECASE)
    return Correction(pattern=pattern, right=right, needs_context=chest)


CORRECTIONS: tuple[Correction, ...] = (
    # dictation commands misheard
    _fix(r"s?c?ratch(?:ed)?\s+(?:at|that|dat|fat|mat)", "scratch that"),
    _fix(r"crash\s+(?:at|that|fat|mat)", "scratch that"),
    _fix(r"new\s+pair\s+of\s+graph", "new paragraph"),
    _fix("spirit", "period", chest=True),
    # a spoken "comma" heard as a word, with Whisper's own mark after it (tuning set)
    _fix(r"(?:coma|calmer|karma)(?=[,.])", "comma", chest=True),
    # ... or as "common" between Whisper's commas (development set, two voices)
    _fix(r"(?<=,\s)common(?=,)", "comma", chest=True),
    # the first section word of a dictation, "Technique", heard as "Acne" (development set)
    _fix(r"\Aacne(?=[\s,.:])", "Technique", chest=True),
    # number words misheard before a unit
    _fix("sick", "six", before=_UNIT),
    _fix("sex", "six", before=_UNIT),
    _fix("for", "four", before=_UNIT),
    _fix("free", "three", before=_UNIT),
    _fix(r"millimet(?:er|re)'s", "millimeters"),
    _fix(r"centimet(?:er|re)'s", "centimeters"),
    # chest words
    _fix(r"plural\s+(?:if\s+you\s+can|a\s+fusion|infusion|diffusion|effusions?)", PLEURAL_EFFUSION),
    _fix(
        r"(?:pleural|lower|lateral|clear|plural)\s+(?:a\s+fusion|infusion|diffusion)",
        PLEURAL_EFFUSION,
    ),
    _fix(r"(?:lower|lateral)\s+effusion", PLEURAL_EFFUSION, chest=True),
    _fix(r"pericard(?:ium|ic|in|al)?\s+(?:effusion|a?\s*fusion|diffusion)", "pericardial effusion"),
    _fix(r"(?:if\s+you\s+can|a\s+fusion|infusion)", "effusion", chest=True),
    _fix("plural", "pleural", chest=True),
    _fix("modules", "nodules", chest=True),
    _fix("module", "nodule", chest=True),
    _fix(r"(?:thickulated|stipulated|speculated|sticulated|ficulated)", "spiculated", chest=True),
    _fix(r"(?:lingual|lignular|living\s+dular)", "lingula", chest=True),
    _fix(r"(?:killer|hiller|healer|filler)(?=\s+(?:lymph|nodes?|region))", "hilar", chest=True),
    _fix("hiller", "hilar", chest=True),
    _fix(r"mediastin(?:um|ul|il)(?=\s+(?:and\s+hilar|lymph))", "mediastinal"),
    _fix(r"mediastin\w*l[iy]n?fadopathy", "mediastinal lymphadenopathy"),
    _fix(r"(?:trivascular|preventcular|promiscular|prevascular)", "prevascular", chest=True),
    _fix(r"corbinary|coronery", "coronary"),
    _fix(r"hounds?\s*(?:feel|field)", "Hounsfield"),
    _fix(r"the\s+generative", "degenerative"),
    _fix(r"thoracic\s+pine", "thoracic spine"),
    _fix(r"multi-?(?:level|lamble|lebel)", "multilevel"),
    _fix(r"(?:sift|sis)(?=\s+in\s+the)", "cyst", chest=True),
    _fix(r"(?<=the\s)clean", "spleen", chest=True),
    _fix(r"m5s?", "emphysema", chest=True),
    _fix(
        r"(?:mile|myel)(?=,?\s+(?:centrilobular|emphysema|bronchial|atelectasis|calcification))",
        "mild",
    ),
    _fix(r"calesified|calsified", "calcified"),
    _fix(r"(?<=calcified\s)(?:rhin\w*|brain\w*|roman|granul\w*)", "granuloma", chest=True),
    _fix(r"n?ordic(?=\s+wall)", "aortic", chest=True),
    _fix(r"ordered(?=\s+wall)", "aortic", chest=True),
    # "the ascending aorta" heard as "order" (development set; "in ascending order of" stays)
    _fix(r"(?<=the\sascending\s)order(?!\s+of\b)", "aorta", chest=True),
    _fix(r"compressiv(?:e\s+|at)e?\s*a?t?e?\s*lectasis", "compressive atelectasis"),
    _fix(r"at(?:ec|ic)\s*t(?:asis|ossing|osses)", "atelectasis", chest=True),
    _fix(r"sub-?sy?(?:te|eg)mental", "subsegmental", chest=True),
    _fix(r"(?<=lung\s)(?:basis|maces|bases)", "bases", chest=True),
    _fix(
        r"(?:bronch(?:ic|i)?\s*(?:t?actasis|tosses|tasis|tossing)|b?run\s*c?actasis)",
        "bronchiectasis",
        chest=True,
    ),
    _fix(r"peri-?[db]ronchial", "peribronchial"),
    _fix(r"super-?clavicular", "supraclavicular"),
    _fix(r"centr\w*\s+m[ae]n[ua]s\s+catheter", "central venous catheter"),
    _fix(r"superior\s+(?:vena|mina)[\s-]+(?:ca|co)\w*", "superior vena cava"),
    _fix(r"ph[iy][db]r?[ao][td]ic", "fibrotic", chest=True),
    _fix(r"(?:mediastinum\s+chatinulation|mas\w*cat+enuation)", "mosaic attenuation", chest=True),
    _fix(r"sera\s+trapping", "air trapping"),
    _fix(r"mucus\s+lugging", "mucus plugging"),
    _fix(r"high\s*(?:l?[io]dal|adult)", "hiatal", chest=True),
    _fix(r"(?:catching|pashy|pashid)(?=\s+ground)", "patchy", chest=True),
    _fix(r"centri(?:l|lary)\s+(?:wave|airway|airways)", "central airways", chest=True),
    _fix(
        r"airways?[\s-]+(?:are|is|marpet)\s+(?:present|parent|panned|paired)",
        "airways are patent",
    ),
    _fix(
        r"cardio\w*(?:\s+(?:area|myery|\w+ery))?(?=\s+(?:ab)?normality)",
        "cardiopulmonary",
        chest=True,
    ),
    _fix(r"(?<=cardiopulmonary\s)normality", "abnormality"),
    # "an" before a vowel, which Whisper often hears as "a" ("with a irregular wall"); not
    # before a number word that starts with one ("a eight millimeter" is written "a 8 mm")
    _fix(r"a(?=\s+(?!(?:one|once|eight|eleven|eu|uni|use|usu)\w*)[aeiou])", "an"),
    # a singular noun before "are": Whisper drops the plural s it cannot hear
    _fix(r"calcification(?=\s+are\b)", "calcifications"),
    _fix(r"opacity(?=\s+(?:are|is\s+in|in)\s+both\b)", "opacities"),
    _fix(r"airway(?=\s+are\b)", "airways"),
)
