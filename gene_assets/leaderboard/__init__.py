"""The leaderboard: every backbone's task metrics side by side."""
