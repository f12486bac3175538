"""The shared trainer: any `TrainablePolicy` (TLA, BC, DP), accelerate, checkpoints and exact resume."""
