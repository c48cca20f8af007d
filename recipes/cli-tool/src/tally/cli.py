"""The `tally` command."""
import collections
import re
import sys

import click

from . import __version__

WORD = re.compile(r"[\w']+")


@click.command()
@click.argument("files", nargs=-1, type=click.File("r", encoding="utf-8"))
@click.option("--top", default=5, show_default=True, help="How many of the most common words to show.")
@click.version_option(__version__)
def main(files, top):
    """Count lines, words and the most common words of FILES (or stdin)."""
    lines = 0
    words = collections.Counter()
    for f in files or (click.get_text_stream("stdin"),):
        for line in f:
            lines += 1
            words.update(w.lower() for w in WORD.findall(line))
    click.echo(f"lines {lines}")
    click.echo(f"words {sum(words.values())}")
    for word, count in words.most_common(top):
        click.echo(f"{count:6d} {word}")
    sys.exit(0)
