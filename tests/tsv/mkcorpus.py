#!/usr/bin/python3
"""mkcorpus.py - tests/tsv/run.sh's text corpus for tsv_check texts.

Usage: mkcorpus.py WORDS SEED COUNT OUT [DOC.md ...]

Writes NUL-terminated records to OUT: COUNT seeded random sentences ('R' then
the text) built from the vocabulary words in WORDS (mixed case, numbers,
punctuation, hyphenated words, and now and then a construct the fast path
must refuse: dotted names, paths, decimals, e-mail, tags, entities), then
COUNT texts
of random punctuation-rich characters and every combination of up to three
tricky pieces ('S'), then every paragraph (blank-line separated) of each DOC
('D' then the text).
"""
import itertools
import random
import sys


def sentence(rng, words):
    seps = [" "] * 12 + [", ", ". ", "; ", ": ", "! ", "? ", " (", ") ", " \"", "\" ",
                         " '", "' ", "\n", "\t", " -- ", " - ", " _", "_ ", " * ", " # ",
                         " = ", " % ", " | ", " [", "] ", " {", "} ", " > ", " $", "'s ",
                         "n't ", " ... ", " \\ ", " ^ ", " ` ", " , . "]
    risky = ["-", ".", "/", "@", "<b>", "&amp;", "~", "+", "1.5", "2.0.1", "..", "-7",
             "+3", "x86", "_", "e-"]
    out = []
    for i in range(rng.randint(1, 40)):
        r = rng.random()
        if r < 0.08:
            out.append(str(rng.randint(0, 10 ** rng.randint(1, 7))))
        else:
            w = rng.choice(words)
            c = rng.random()
            if c < 0.1:
                w = w.upper()
            elif c < 0.3:
                w = w.capitalize()
            if rng.random() < 0.08:  # hyphenated words
                for _ in range(rng.randint(1, 3)):
                    w += "-" + rng.choice(words)
            out.append(w)
        if rng.random() < 0.01:
            out.append(rng.choice(risky))
        elif rng.random() < 0.02:  # a hyphen or plus next to a word or number
            out.append(rng.choice(["-", "+", "--", "-x", "+y"]))
        out.append(rng.choice(seps))
    if rng.random() < 0.5:
        out.append(".")
    return "".join(out)


def soup(rng):
    """Characters at random from an alphabet rich in the parser's special
    characters: most such texts are refused, the accepted ones must match."""
    alphabet = "aeiouyYsStTnNlLrR-- -+.._:,;!?'\"()/@&<>~#=*%$^|\\`[]{}0123456789\t\n"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))


def combinations():
    """Every text of up to three pieces from a list of the tricky ones
    (dots, hyphens, plus, blanks next to words and numbers)."""
    parts = ["a", "1", "ab", "-", ".", "..", "...", "....", ". ", ".. ", "... ", " ", "\t",
             "\n", "_", ",", "'", "--", "+", "!", ":", "a-b", "x86", "2nd", "e", "E5", "<", "&",
             "/", "@"]
    for k in (1, 2, 3):
        for combo in itertools.product(parts, repeat=k):
            yield "".join(combo)


def main():
    words_file, seed, count, out_file = sys.argv[1:5]
    with open(words_file) as f:
        words = [w.strip() for w in f if w.strip()]
    rng = random.Random(int(seed))
    with open(out_file, "wb") as out:
        for _ in range(int(count)):
            out.write(b"R" + sentence(rng, words).encode() + b"\0")
        for _ in range(int(count)):
            out.write(b"S" + soup(rng).encode() + b"\0")
        for text in combinations():
            out.write(b"S" + text.encode() + b"\0")
        for doc in sys.argv[5:]:
            with open(doc, "rb") as f:
                text = f.read().replace(b"\0", b"")
            for para in text.split(b"\n\n"):
                if para.strip():
                    out.write(b"D" + para + b"\0")


main()
