"""The framework every family runs on; imports flow one way, top to bottom:

``family`` (the registry: name -> ``Trainer`` subclass; ``load_model``)
  -> ``loop`` (training: schedule, batches, checkpoints, then evaluation and saving)
  -> ``saved`` (model/weights.pt + config.json) -> ``evaluation`` (encode, score, codes.npz)
  -> ``artifacts`` (matrices, pictures) -> ``trainer`` (the interface a family implements)
  -> ``view`` (the rendered, split data view) -> ``config`` / ``context`` (what a trial reads
  and where it reports); ``trainer`` -> ``outputs`` (what a family declares it reports, and
  their directions; torch-free, read by analysis and ``study status``).

Families (``trainables.families``) sit above this and import from it; nothing here imports a family.
"""
