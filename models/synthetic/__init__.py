"""Synthetic chest CT studies whose every finding is known.

``spec.sample_study_spec(seed)`` draws a patient, an acquisition and findings;
``generator.render_study(spec)`` renders the HU volume with finding masks;
``study_files`` writes a study folder (DICOM series, truth.json, masks) and
``dataset`` a train/valid/test set in the CT-RATE layout.  ``preview`` makes
montages and ``realism`` compares tissue HU and sizes with a real chest CT.
Nothing here imports the application (HL7 orders and dictation audio live in
``app.services.synthetic_study``).
"""
