"""`tla pretrain`: a tactile-language base model (the tiny Qwen2-VL) from a simulator-made corpus."""
