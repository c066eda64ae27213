"""``headpose compare``: experiments grouped by training seed, their spread, paired intervals."""
