"""What a study is: the study file, its types, parameters, families, limits and baselines (torch-free)."""
