"""What every layer scores with: task metrics, per-group tables, bootstrap intervals.

Pure functions of predictions and labels (and the torchmetrics the systems log while they
train), below the models so that a system, an evaluation, a study and a report all count the
same way. They import only :mod:`agefair.labels`.
"""
