"""Training: the loss, the two-phase loop with per-epoch validation, resumable runs, and
multi-process (DistributedDataParallel) training."""
