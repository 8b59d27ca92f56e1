"""Evidence bundles: a device's identity and its signed records, checkable offline by anyone."""
