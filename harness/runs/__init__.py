"""Runs on disk: the store (run folders, sample files, locks), manifests, the response cache, and the
catalog that reads runs back (RunView, load_runs) for the gate, reports, the leaderboard and the API."""
