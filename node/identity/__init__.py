"""Hit/no-hit identity checks: normalisation, match keys, MRZ parsing and the token index."""
