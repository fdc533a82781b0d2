"""UTKFace data: parsing, safe extraction, splits, the decoded cache, transforms, datamodule."""
