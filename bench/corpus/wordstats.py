"""hw5: word statistics over a folder of text files.

usage: python3 wordstats.py FOLDER [--top N] [--min-length N] [--csv OUT]
"""

import argparse
import csv
import os
import string
import sys
from collections import Counter

STOP_WORDS = set(
    "a an and are as at be by for from has he in is it its of on or that the to was were will with".split()
)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Count words in every .txt file of a folder.")
    parser.add_argument("folder", help="folder with .txt files")
    parser.add_argument("--top", type=int, default=10, help="how many words to show")
    parser.add_argument("--min-length", type=int, default=3, help="ignore shorter words")
    parser.add_argument("--csv", dest="csv_out", help="also write every count to this CSV file")
    parser.add_argument("--keep-stop-words", action="store_true", help="count words like 'the' too")
    return parser.parse_args(argv)


def text_files(folder):
    names = []
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if os.path.isfile(path) and entry.endswith(".txt"):
            names.append(path)
    return names


def words_of(line, min_length, keep_stop_words):
    table = str.maketrans(string.punctuation, " " * len(string.punctuation))
    for word in line.translate(table).lower().split():
        if len(word) < min_length:
            continue
        if not keep_stop_words and word in STOP_WORDS:
            continue
        if word.isdigit():
            continue
        yield word


class FileStats:
    def __init__(self, path):
        self.path = path
        self.lines = 0
        self.words = 0
        self.longest = ""
        self.counts = Counter()

    def add_line(self, line, min_length, keep_stop_words):
        self.lines += 1
        for word in words_of(line, min_length, keep_stop_words):
            self.words += 1
            self.counts[word] += 1
            if len(word) > len(self.longest):
                self.longest = word

    def summary(self):
        name = os.path.basename(self.path)
        return f"{name:<24} {self.lines:>6} lines {self.words:>7} words  longest: {self.longest}"


def read_stats(path, min_length, keep_stop_words):
    stats = FileStats(path)
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                stats.add_line(line, min_length, keep_stop_words)
    except OSError as exc:
        print(f"cannot read {path}: {exc}", file=sys.stderr)
        return None
    return stats


def merge(all_stats):
    total = Counter()
    for stats in all_stats:
        total.update(stats.counts)
    return total


def bar(count, largest, width=30):
    if largest == 0:
        return ""
    filled = round(width * count / largest)
    return "#" * filled + "." * (width - filled)


def print_top(total, top):
    common = total.most_common(top)
    if not common:
        print("no words found")
        return
    largest = common[0][1]
    print()
    print(f"top {len(common)} words")
    for rank, (word, count) in enumerate(common, start=1):
        print(f"{rank:>3}. {word:<18} {count:>6} {bar(count, largest)}")


def write_csv(path, total, all_stats):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        header = ["word", "total"] + [os.path.basename(s.path) for s in all_stats]
        writer.writerow(header)
        for word, count in sorted(total.items(), key=lambda item: (-item[1], item[0])):
            row = [word, count] + [s.counts.get(word, 0) for s in all_stats]
            writer.writerow(row)
    print(f"wrote {len(total)} words to {path}")


def shared_words(all_stats):
    if len(all_stats) < 2:
        return set()
    shared = set(all_stats[0].counts)
    for stats in all_stats[1:]:
        shared &= set(stats.counts)
    return shared


def report(all_stats, top):
    print(f"{len(all_stats)} files")
    for stats in all_stats:
        print("  " + stats.summary())
    total = merge(all_stats)
    print_top(total, top)
    shared = shared_words(all_stats)
    if shared:
        sample = ", ".join(sorted(shared)[:8])
        print(f"\n{len(shared)} words appear in every file, e.g. {sample}")
    return total


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.top < 1:
        print("--top must be at least 1", file=sys.stderr)
        return 2
    if not os.path.isdir(args.folder):
        print(f"{args.folder} is not a folder", file=sys.stderr)
        return 2
    paths = text_files(args.folder)
    if not paths:
        print(f"no .txt files in {args.folder}")
        return 1
    all_stats = []
    for path in paths:
        stats = read_stats(path, args.min_length, args.keep_stop_words)
        if stats is not None:
            all_stats.append(stats)
    total = report(all_stats, args.top)
    if args.csv_out:
        write_csv(args.csv_out, total, all_stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
