"""The controls: the files a team keeps, their conditions, and what they decide."""
