"""Activity in, emissions out: readers, validation, emission factors and the same-source step."""
