"""Discovery of new backbones, the schedule, sensors and declarative automation that keep the leaderboard current."""
