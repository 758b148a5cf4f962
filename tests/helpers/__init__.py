"""Test machinery kept out of the package: the bad-input table, the write hook, the kill and DDP helpers."""
