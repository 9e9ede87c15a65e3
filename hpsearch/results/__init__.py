"""What a study holds, read back: trials, rankings, renderings, reports, exported configs (torch-free unless
weights load)."""
