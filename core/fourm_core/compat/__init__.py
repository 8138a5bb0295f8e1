"""Import of checkpoints from other 4M implementations (the reference apple/ml-4m)."""
