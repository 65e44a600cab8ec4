"""The regression gate: paired per-sample statistics (paired), per-metric verdicts with Holm's correction
(verdicts), the policy file (policy), choosing the runs to compare (collect) and the outputs (report)."""
