"""Chest CT vocabulary: the words a thoracic radiologist dictates, grouped by kind.

A general list written from chest CT reporting practice (RadLex-style anatomy,
findings, descriptors, devices, technique and measurement words), not from any
benchmark sentence: ``tests/speech/test_vocabulary.py`` checks that most of it
never occurs in the benchmark's dictations and that the held-out dictations
contributed nothing to it.  It has two uses:

- :mod:`app.speech.phonetic` maps words Whisper invents ("stickulated",
  "hyattal") to the term they sound like;
- words in it are never "corrected" into something else.

Terms are lower case; a term of several words is matched as a whole.
"""

from __future__ import annotations

ANATOMY = """
lung lungs lobe lobes lobar segment segments segmental subsegmental lingula lingular
apex apices apical apicoposterior anterior posterior lateral medial superior inferior basal
basilar bibasilar bases base fissure fissures fissural perifissural major minor azygos
upper middle lower right left bilateral unilateral ipsilateral contralateral
trachea tracheal carina carinal bronchus bronchi bronchial bronchiolar bronchioles
bronchovascular peribronchial endobronchial mainstem airway airways
pleura pleural subpleural extrapleural pericardium pericardial mediastinum mediastinal
hilum hila hilar paratracheal subcarinal prevascular paraesophageal aortopulmonary
retrocrural supraclavicular axillary internal mammary cardiophrenic
heart cardiac atrium atrial ventricle ventricular septum septal valve valves mitral
aortic tricuspid pulmonic coronary
aorta arch ascending descending thoracic abdominal
pulmonary artery arteries arterial vein veins venous trunk
vena cava superior inferior brachiocephalic subclavian jugular innominate azygous
esophagus esophageal thyroid thymus
cardiopulmonary cardiothoracic
chest thorax thoracic diaphragm diaphragmatic hemidiaphragm
rib ribs sternum sternal clavicle clavicles scapula vertebra vertebrae vertebral
spine spinal thoracic costochondral manubrium
liver hepatic spleen splenic kidney kidneys renal adrenal adrenals pancreas gallbladder
stomach abdomen abdominal
breast breasts soft tissues chest wall
interlobular intralobular centrilobular lobular interstitium interstitial alveolar
parenchyma parenchymal
"""

FINDINGS = """
nodule nodules nodular micronodules mass masses lesion lesions opacity opacities
ground glass ground-glass part-solid semisolid solid subsolid
consolidation consolidations consolidative atelectasis atelectatic
effusion effusions pneumothorax hydropneumothorax hemothorax empyema
emphysema emphysematous paraseptal panlobular bulla bullae bullous bleb blebs
bronchiectasis bronchiolectasis bronchiolitis bronchitis bronchial wall thickening
fibrosis fibrotic honeycombing reticulation reticular traction
pneumonia pneumonitis aspiration infection infectious inflammatory
edema congestion cardiomegaly pericardial effusion
lymphadenopathy lymph node nodes adenopathy
embolism emboli embolus thrombus thrombosis filling defect
aneurysm aneurysmal dilatation dilated ectasia dissection
calcification calcifications calcified granuloma granulomas granulomatous
cyst cysts cystic cavity cavitary cavitation
hernia hiatal
mucus plugging plug plugs impaction
scarring scar scars
mosaic attenuation air trapping
tree-in-bud bud
septal thickening crazy paving
neoplasm malignancy malignant metastasis metastases metastatic carcinoma tumor
lymphangitic
sarcoidosis tuberculosis
osteophytes osteopenia fracture fractures compression sclerotic lytic
degenerative spondylosis
cholelithiasis steatosis
hypodense hyperdense hypoattenuating hyperattenuating isodense
enhancing enhancement nonenhancing
"""

DESCRIPTORS = """
spiculated lobulated smooth irregular ill-defined well-defined circumscribed
patchy scattered diffuse focal multifocal confluent dependent peripheral central
mild mildly moderate moderately severe small large trace tiny minimal
new stable unchanged increased decreased enlarged prominent
normal abnormal abnormality abnormalities unremarkable patent clear
acute chronic subacute
likely compatible consistent suspicious suggestive indeterminate benign
abutting adjacent contiguous compressive
visualized partially imaged
"""

TECHNIQUE = """
axial coronal sagittal helical
contrast intravenous noncontrast unenhanced enhanced
angiography angiogram
images imaging acquired obtained reformats reconstructions
examination exam study comparison prior
millimeter millimeters centimeter centimeters
hounsfield unit units diameter short axis long axis
"""

DEVICES = """
catheter endotracheal tube tubes nasogastric pacemaker leads stent sternotomy wires
port drain clips
"""

SECTIONS = """
indication technique comparison findings impression recommendation recommendations
follow-up
"""

CHEST_CT_VOCABULARY: frozenset[str] = frozenset(
    word
    for block in (ANATOMY, FINDINGS, DESCRIPTORS, TECHNIQUE, DEVICES, SECTIONS)
    for word in block.split()
)
"""Every single word of the vocabulary (lower case)."""


def vocabulary_groups() -> list[str]:
    """The vocabulary's lines: each holds words that go together ("embolism emboli embolus
    thrombus thrombosis filling defect")."""
    blocks = (ANATOMY, FINDINGS, DESCRIPTORS, TECHNIQUE, DEVICES)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


_STATEMENT_TEXT = """
no not nor none neither without negative absent free resolved
left right both bilateral unilateral
mild mildly moderate moderately severe small large tiny trace minimal
new stable unchanged increased decreased enlarged normal abnormal
is are was were has have had be been there and or
period comma colon semicolon paragraph scratch delete strike that line next section
full stop findings impression technique comparison indication
"""
STATEMENT_WORDS: frozenset[str] = frozenset(_STATEMENT_TEXT.split())
"""Words that make a statement what it is (negations, laterality, size and change, the verb)
and the dictation's commands and section words: no correction replaces or swallows them."""

_MUST_BE_HEARD_TEXT = """
no not nor none neither without negative absent free resolved
left right both bilateral unilateral
new stable unchanged increased decreased enlarged normal abnormal
"""
MUST_BE_HEARD: frozenset[str] = frozenset(_MUST_BE_HEARD_TEXT.split())
"""Statement words no correction writes in place of what Whisper wrote: a negation, a side,
a change or "normal" must be heard as such.  ("Nerema 2.3 cm cavity", for "There is a 2.3
cm cavity", must not become "Normal 2.3 cm cavity".)  Size words may be written where the
sound and the sentence agree ("my old" -> mild); section words and commands may be mended."""
