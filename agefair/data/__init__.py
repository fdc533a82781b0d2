"""The faces a model learns from, and how they reach it.

UTKFace's archive is extracted safely and its file names parsed into labels
(:mod:`~agefair.data.utkface`, bad files counted and skipped), split once by a seeded,
stratified manifest, decoded once into a memory-mapped cache (:mod:`~agefair.data.cache`) and
served by the LightningDataModule (:mod:`~agefair.data.datamodule`) through a transform preset
(:mod:`~agefair.data.transforms`; the study degradations in :mod:`~agefair.data.degradations`).
:mod:`~agefair.data.framing` cuts a face out the way the training crops are framed, for training
and for use alike. Nothing here knows a model.
"""
