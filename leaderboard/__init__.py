"""The static HTML leaderboard (`harness leaderboard build`) and verified submission bundles
(`leaderboard submit` / `add`)."""
