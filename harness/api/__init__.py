"""The Python API the CLI, training and tests call: `evaluate`, `gate`, `load_runs`, `rescore`.

Each function takes typed arguments, does the work and returns frozen results; it prints nothing (info
lines go to the `harness` logger) and raises the same typed `HarnessError`s the CLI turns into exit
codes. `import harness` stays cheap: these modules load on first use of `harness.evaluate` and friends.
"""
