"""Training, evaluation and distillation of the Radscribe model.

``MultiModalTrainer(config).train(...)`` fits the model to a data set in the
CT-RATE layout, a hospital's DICOM export with signed reports, or the synthetic
phantoms; ``evaluate_checkpoint`` measures a checkpoint; ``distill`` trains a
smaller student.  Nothing here is imported by inference.
"""
