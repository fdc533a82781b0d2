"""agefair: age, gender and ethnicity from face photos, compared honestly."""

__version__ = "0.1.0"
