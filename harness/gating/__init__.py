"""The regression gate: paired per-sample statistics (paired), per-metric verdicts with Holm's correction
(verdicts), the policy file (policy), choosing the runs to compare (collect) and the outputs (report).

The package is `gating`, not `gate`: importing a subpackage sets it as an attribute of its parent, which
would replace the API function `harness.gate` with this module.
"""
