"""Reports: the terminal, the verdict page, JUnit and the postmortem."""
