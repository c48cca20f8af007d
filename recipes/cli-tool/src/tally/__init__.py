"""tally: count lines, words and the most common words."""

__version__ = "1.0.0"
