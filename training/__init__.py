"""Thin SFT / DPO / RLVR modules (local TRL + peft, or Tinker) whose checkpoints flow into the harness:
stages, pipelines, RLVR with the suites' own rewards, decontamination and prompt curation."""
