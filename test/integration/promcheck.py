#!/usr/bin/env python3
"""promcheck.py - a strict checker for the Prometheus text exposition
format, version 0.0.4 (standard library only), for the /metrics tests.

Usage:
    promcheck.py FILE|-                     check; exit 0 if valid, 1 if not
    promcheck.py FILE --get 'name{l="v"}'   also print that series' value
                                            (repeatable; exit 1 if absent;
                                            label order does not matter)
    promcheck.py FILE --families            also print "name type" per family
    promcheck.py --self-test                run the built-in cases

What is checked (stricter than Prometheus itself in places):
  - the input is UTF-8 and ends with a newline;
  - every family has exactly one "# HELP" and one "# TYPE" line, both before
    its first sample; TYPE is counter, gauge, histogram, summary or untyped;
  - metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
    [a-zA-Z_][a-zA-Z0-9_]* and do not start with "__", no label twice;
  - label values are double-quoted with only \\\\, \\" and \\n escapes, HELP
    text only uses \\\\ and \\n;
  - values are floats (decimal, +Inf, -Inf, NaN), timestamps integers;
  - sample names fit their family: counter NAME or NAME_total, gauge and
    untyped NAME, histogram NAME_bucket/_sum/_count, summary NAME/_sum/_count;
    a family name must not collide with another family's sample names;
  - no series (name plus label set) appears twice, and the samples of a
    family are contiguous;
  - counters and counts are not negative;
  - histograms: every _bucket has an "le" label; per set of other labels
    the counts do not decrease as le grows, a +Inf bucket exists and equals
    _count, and _sum and _count exist;
  - summaries: NAME samples carry a "quantile" label in [0, 1] and every
    label set has _sum and _count.

On the first violation it prints "promcheck: FILE:LINE: message" on stderr
and exits 1.
"""

import argparse
import math
import re
import sys

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
TIMESTAMP = re.compile(r"-?[0-9]+")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
BLANKS = " \t"


class Violation(Exception):
    def __init__(self, line, msg):
        super().__init__(msg)
        self.line = line
        self.msg = msg


def parse_float(tok):
    """Float value as the format allows it, or None."""
    if tok == "+Inf":
        return math.inf
    if tok == "-Inf":
        return -math.inf
    if tok == "NaN":
        return math.nan
    if DECIMAL.fullmatch(tok):
        return float(tok)
    return None


def skip_blanks(s, i):
    while i < len(s) and s[i] in BLANKS:
        i += 1
    return i


def parse_labels(s, i, where):
    """Parse '{...}' starting at s[i] == '{'.  Returns (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        i = skip_blanks(s, i)
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        m = LABEL_NAME.match(s, i)
        if not m:
            raise Violation(where, "expected a label name at column %d" % (i + 1))
        name = m.group(0)
        if name.startswith("__"):
            raise Violation(where, "label name %r is reserved (starts with __)" % name)
        if name in labels:
            raise Violation(where, "label %r appears twice" % name)
        i = skip_blanks(s, m.end())
        if i >= len(s) or s[i] != "=":
            raise Violation(where, "expected '=' after label %r" % name)
        i = skip_blanks(s, i + 1)
        if i >= len(s) or s[i] != '"':
            raise Violation(where, "value of label %r is not double-quoted" % name)
        i += 1
        value = []
        while True:
            if i >= len(s):
                raise Violation(where, "unterminated value of label %r" % name)
            c = s[i]
            if c == '"':
                i += 1
                break
            if c == "\\":
                nxt = s[i + 1] if i + 1 < len(s) else ""
                if nxt == "\\":
                    value.append("\\")
                elif nxt == '"':
                    value.append('"')
                elif nxt == "n":
                    value.append("\n")
                else:
                    raise Violation(where, "invalid escape \\%s in value of label %r"
                                    % (nxt, name))
                i += 2
                continue
            value.append(c)
            i += 1
        labels[name] = "".join(value)
        i = skip_blanks(s, i)
        if i < len(s) and s[i] == ",":
            i += 1
            continue
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        raise Violation(where, "expected ',' or '}' after value of label %r" % name)


def parse_series(s, where):
    """Parse 'name' or 'name{labels}' at the start of s.  Returns
    (name, labels, index after it)."""
    m = METRIC_NAME.match(s)
    if not m:
        raise Violation(where, "invalid metric name at the start of %r" % s[:40])
    name = m.group(0)
    i = m.end()
    labels = {}
    if i < len(s) and s[i] == "{":
        labels, i = parse_labels(s, i, where)
    return name, labels, i


def series_key(name, labels):
    return (name, tuple(sorted(labels.items())))


def format_series(name, labels):
    if not labels:
        return name
    inner = ",".join('%s="%s"' % (k, v.replace("\\", "\\\\").replace('"', '\\"')
                                  .replace("\n", "\\n"))
                     for k, v in sorted(labels.items()))
    return "%s{%s}" % (name, inner)


class Family:
    def __init__(self, name):
        self.name = name
        self.help_line = None
        self.type = None
        self.type_line = None
        self.samples = []        # (line, sample name, labels, value)

    def sample_names(self):
        n = self.name
        return {
            "counter": (n, n + "_total"),
            "gauge": (n,),
            "untyped": (n,),
            "histogram": (n + "_bucket", n + "_sum", n + "_count"),
            "summary": (n, n + "_sum", n + "_count"),
        }[self.type]


class Exposition:
    """The parsed text: families in order and every series' value."""

    def __init__(self):
        self.families = {}       # name -> Family, in order of appearance
        self.owner = {}          # sample name -> Family (from TYPE lines)
        self.series = {}         # series_key -> (line, value token)
        self.finished = set()    # families whose block of samples ended
        self.current = None      # family of the previous sample

    # -- lines -----------------------------------------------------------

    def family(self, name):
        fam = self.families.get(name)
        if fam is None:
            fam = self.families[name] = Family(name)
        return fam

    def end_block(self):
        if self.current is not None:
            self.finished.add(self.current.name)
            self.current = None

    def comment(self, text, ln):
        toks = text[1:].lstrip(BLANKS)
        keyword = toks.split(None, 1)[0] if toks.split() else ""
        if keyword not in ("HELP", "TYPE"):
            return                      # an ordinary comment
        rest = toks[len(keyword):]
        if rest and rest[0] not in BLANKS:
            return                      # e.g. "# HELPER", a comment
        rest = rest.lstrip(BLANKS)
        m = METRIC_NAME.match(rest)
        if not m:
            raise Violation(ln, "# %s without a valid metric name" % keyword)
        name = m.group(0)
        after = rest[m.end():]
        if after and after[0] not in BLANKS:
            raise Violation(ln, "invalid metric name in # %s: %r" % (keyword, rest.split()[0]))
        fam = self.family(name)
        if fam.samples:
            raise Violation(ln, "# %s for %s after its samples (line %d)"
                            % (keyword, name, fam.samples[0][0]))
        self.end_block()
        if keyword == "HELP":
            if fam.help_line is not None:
                raise Violation(ln, "second # HELP for %s (first on line %d)"
                                % (name, fam.help_line))
            doc = after[1:] if after else ""
            i = 0
            while i < len(doc):
                if doc[i] == "\\":
                    if doc[i + 1:i + 2] not in ("\\", "n"):
                        raise Violation(ln, "invalid escape \\%s in # HELP text of %s"
                                        % (doc[i + 1:i + 2], name))
                    i += 1
                i += 1
            fam.help_line = ln
            return
        words = after.split()
        if len(words) != 1:
            raise Violation(ln, "# TYPE %s needs exactly one type, got %r"
                            % (name, after.strip()))
        if words[0] not in TYPES:
            raise Violation(ln, "# TYPE %s: unknown type %r (expected one of %s)"
                            % (name, words[0], ", ".join(TYPES)))
        if fam.type is not None:
            raise Violation(ln, "second # TYPE for %s (first on line %d)"
                            % (name, fam.type_line))
        fam.type = words[0]
        fam.type_line = ln
        if name in self.owner and self.owner[name] is not fam:
            raise Violation(ln, "family %s collides with the samples of family %s"
                            % (name, self.owner[name].name))
        for sn in fam.sample_names():
            other = self.owner.get(sn)
            if other is not None and other is not fam:
                raise Violation(ln, "sample name %s of %s %s collides with family %s"
                                % (sn, fam.type, name, other.name))
            other = self.families.get(sn)
            if sn != name and other is not None and other.type is not None:
                raise Violation(ln, "sample name %s of %s %s collides with family %s"
                                % (sn, fam.type, name, sn))
            self.owner[sn] = fam

    def sample(self, text, ln):
        name, labels, i = parse_series(text, ln)
        if i >= len(text) or text[i] not in BLANKS:
            raise Violation(ln, "expected a blank and a value after %s" % name)
        toks = text[i:].split()
        if not toks or len(toks) > 2:
            raise Violation(ln, "expected 'value [timestamp]' after %s, got %r"
                            % (name, text[i:].strip()))
        value = parse_float(toks[0])
        if value is None:
            raise Violation(ln, "value %r of %s is not a float" % (toks[0], name))
        if len(toks) == 2 and not TIMESTAMP.fullmatch(toks[1]):
            raise Violation(ln, "timestamp %r of %s is not an integer" % (toks[1], name))

        fam = self.owner.get(name)
        if fam is None:
            raise Violation(ln, "sample %s has no # TYPE line for its family before it"
                            % name)
        if fam.help_line is None:
            raise Violation(ln, "family %s has no # HELP line before its first sample"
                            % fam.name)
        if fam is not self.current:
            if fam.name in self.finished:
                raise Violation(ln, "samples of family %s are not contiguous (it started "
                                "on line %d)" % (fam.name, fam.samples[0][0]))
            self.end_block()
            self.current = fam
        key = series_key(name, labels)
        if key in self.series:
            raise Violation(ln, "duplicate series %s (first on line %d)"
                            % (format_series(name, labels), self.series[key][0]))
        self.series[key] = (ln, toks[0])
        fam.samples.append((ln, name, labels, value))

    # -- whole families --------------------------------------------------

    def check_family(self, fam):
        if fam.type is None:
            raise Violation(fam.help_line, "family %s has # HELP but no # TYPE" % fam.name)
        if fam.type == "counter":
            for ln, name, _, v in fam.samples:
                if v < 0 or math.isnan(v):
                    raise Violation(ln, "counter %s has value %r" % (name, v))
        elif fam.type == "histogram":
            self.check_histogram(fam)
        elif fam.type == "summary":
            self.check_summary(fam)

    @staticmethod
    def group_by(fam, drop):
        """{other labels: {sample name: [(line, labels, value)]}}"""
        groups = {}
        for ln, name, labels, v in fam.samples:
            rest = tuple(sorted((k, x) for k, x in labels.items() if k != drop))
            groups.setdefault(rest, {}).setdefault(name, []).append((ln, labels, v))
        return groups

    def check_sum_count(self, fam, groups, drop):
        n = fam.name
        for rest, by_name in groups.items():
            where = min(s[0] for lst in by_name.values() for s in lst)
            what = format_series(n, dict(rest))
            for suffix in ("_sum", "_count"):
                if n + suffix not in by_name:
                    raise Violation(where, "%s %s has no %s%s" % (fam.type, what, n, suffix))
                for ln, labels, v in by_name[n + suffix]:
                    if drop in labels:
                        raise Violation(ln, "%s%s must not have a %r label" % (n, suffix, drop))
            ln, _, count = by_name[n + "_count"][0]
            if count < 0 or math.isnan(count):
                raise Violation(ln, "%s_count is %r" % (n, count))

    def check_histogram(self, fam):
        n = fam.name
        groups = self.group_by(fam, "le")
        for rest, by_name in groups.items():
            what = format_series(n, dict(rest))
            buckets = by_name.get(n + "_bucket", [])
            if not buckets:
                where = min(s[0] for lst in by_name.values() for s in lst)
                raise Violation(where, "histogram %s has no %s_bucket series" % (what, n))
            bounds = []
            for ln, labels, v in buckets:
                if "le" not in labels:
                    raise Violation(ln, "%s_bucket without an 'le' label" % n)
                le = parse_float(labels["le"])
                if le is None or math.isnan(le):
                    raise Violation(ln, "le=%r of %s_bucket is not a number"
                                    % (labels["le"], n))
                if v < 0 or math.isnan(v):
                    raise Violation(ln, "bucket count of %s_bucket is %r" % (n, v))
                bounds.append((le, v, ln))
            bounds.sort()
            for (le1, v1, _), (le2, v2, ln2) in zip(bounds, bounds[1:]):
                if le1 == le2:
                    raise Violation(ln2, "histogram %s has two buckets with le=%r" % (what, le2))
                if v2 < v1:
                    raise Violation(ln2, "histogram %s: bucket le=%r has count %r, less than "
                                    "%r for le=%r" % (what, le2, v2, v1, le1))
            if bounds[-1][0] != math.inf:
                raise Violation(buckets[0][0], "histogram %s has no le=\"+Inf\" bucket" % what)
        self.check_sum_count(fam, groups, "le")
        for rest, by_name in groups.items():
            inf = [b for b in by_name[n + "_bucket"] if parse_float(b[1]["le"]) == math.inf]
            ln, _, count = by_name[n + "_count"][0]
            if inf[0][2] != count:
                raise Violation(ln, "histogram %s: +Inf bucket %r != _count %r"
                                % (format_series(n, dict(rest)), inf[0][2], count))

    def check_summary(self, fam):
        n = fam.name
        for ln, name, labels, _ in fam.samples:
            if name != n:
                continue
            q = parse_float(labels.get("quantile", ""))
            if "quantile" not in labels:
                raise Violation(ln, "summary sample %s without a 'quantile' label" % n)
            if q is None or not 0 <= q <= 1:
                raise Violation(ln, "quantile=%r of %s is not in [0, 1]"
                                % (labels["quantile"], n))
        self.check_sum_count(fam, self.group_by(fam, "quantile"), "quantile")


def parse(text):
    """Parse and check an exposition; raises Violation."""
    expo = Exposition()
    if text and not text.endswith("\n"):
        raise Violation(text.count("\n") + 1, "the last line does not end with a newline")
    for ln, line in enumerate(text.split("\n")[:-1] if text else [], 1):
        stripped = line.lstrip(BLANKS)
        if not stripped:
            continue
        if "\r" in line:
            raise Violation(ln, "carriage return in line (lines end with \\n only)")
        if stripped.startswith("#"):
            expo.comment(stripped, ln)
        else:
            expo.sample(stripped, ln)
    for fam in expo.families.values():
        expo.check_family(fam)
    return expo


def lookup(expo, selector):
    """Value token of the series the selector names, or None."""
    name, labels, i = parse_series(selector.strip(), 0)
    if i != len(selector.strip()):
        raise Violation(0, "trailing text in selector %r" % selector)
    hit = expo.series.get(series_key(name, labels))
    return hit[1] if hit else None


# -- self-test -------------------------------------------------------------

GOOD = [
    "",
    "# just a comment\n\n",
    '# HELP up Whether it is up.\n# TYPE up gauge\nup 1\n',
    '# TYPE req_total counter\n# HELP req_total Requests, by \\\\path\\n.\n'
    'req_total{path="/a \\"q\\" \\\\ \\n",code="200",} 3 1700000000000\n'
    'req_total{code="500",path="/a"} 0\n',
    '# HELP c A counter with the _total suffix.\n# TYPE c counter\nc_total 1e3\n',
    '# HELP g Special values.\n# TYPE g gauge\ng{x="a"} +Inf\ng{x="b"} -Inf\ng{x="c"} NaN\n'
    'g{x="d"} -.5\n',
    '# HELP lat Latency.\n# TYPE lat histogram\n'
    'lat_bucket{db="a",le="0.1"} 1\nlat_bucket{db="a",le="1"} 3\nlat_bucket{le="+Inf",db="a"} 3\n'
    'lat_sum{db="a"} 1.5\nlat_count{db="a"} 3\n'
    'lat_bucket{db="b",le="+Inf"} 0\nlat_sum{db="b"} 0\nlat_count{db="b"} 0\n',
    '# HELP s A summary.\n# TYPE s summary\ns{quantile="0.5"} 1\ns{quantile="0.99"} 2\n'
    's_sum 10\ns_count 7\n',
    '# HELP empty No samples yet.\n# TYPE empty histogram\n',
]

BAD = [
    ('# TYPE up gauge\nup 1\n', "no # HELP"),
    ('# HELP up x\nup 1\n', "no # TYPE"),
    ('up 1\n', "no # TYPE"),
    ('# HELP up x\n# TYPE up gaugee\nup 1\n', "unknown type"),
    ('# HELP up x\n# TYPE up gauge\nup 1', "newline"),
    ('# HELP up x\n# TYPE up gauge\n1up 1\n', "invalid metric name"),
    ('# HELP up x\n# TYPE up gauge\nup{1a="x"} 1\n', "label name"),
    ('# HELP up x\n# TYPE up gauge\nup{__a="x"} 1\n', "reserved"),
    ('# HELP up x\n# TYPE up gauge\nup{a=x} 1\n', "double-quoted"),
    ('# HELP up x\n# TYPE up gauge\nup{a="x\\t"} 1\n', "invalid escape"),
    ('# HELP up x\n# TYPE up gauge\nup{a="x} 1\n', "unterminated"),
    ('# HELP up x\n# TYPE up gauge\nup{a="x",a="y"} 1\n', "twice"),
    ('# HELP up x\n# TYPE up gauge\nup one\n', "not a float"),
    ('# HELP up x\n# TYPE up gauge\nup inf\n', "not a float"),
    ('# HELP up x\n# TYPE up gauge\nup 1 2.5\n', "timestamp"),
    ('# HELP up x\n# TYPE up gauge\nup{a="1"} 1\nup{a="1"} 2\n', "duplicate series"),
    ('# HELP a x\n# TYPE a gauge\n# HELP b x\n# TYPE b gauge\na 1\nb 1\na{x="y"} 2\n',
     "not contiguous"),
    ('# HELP up x\n# TYPE up gauge\nup 1\n# HELP up y\n', "after its samples"),
    ('# HELP up x\n# HELP up y\n# TYPE up gauge\n', "second # HELP"),
    ('# HELP up bad \\t escape\n# TYPE up gauge\n', "invalid escape"),
    ('# HELP c x\n# TYPE c counter\nc -1\n', "counter c has value"),
    ('# HELP c x\n# TYPE c counter\nc_count 1\n', "no # TYPE"),
    ('# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', "+Inf"),
    ('# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\n'
     'h_sum 1\nh_count 1\n', "less than"),
    ('# HELP h x\n# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n', "!= _count"),
    ('# HELP h x\n# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 2\n', "no h_sum"),
    ('# HELP h x\n# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 2\n', "no h_count"),
    ('# HELP h x\n# TYPE h histogram\nh_bucket 2\nh_sum 2\nh_count 2\n', "'le'"),
    ('# HELP h x\n# TYPE h histogram\nh_bucket{le="x"} 2\nh_sum 2\nh_count 2\n', "not a number"),
    ('# HELP h x\n# TYPE h histogram\nh 2\n', "no # TYPE"),
    ('# HELP h x\n# TYPE h histogram\n# HELP h_sum x\n# TYPE h_sum gauge\n', "collides"),
    ('# HELP s x\n# TYPE s summary\ns 1\ns_sum 1\ns_count 1\n', "quantile"),
    ('# HELP up x\n# TYPE up gauge\nup 1\r\n', "carriage return"),
]

GETS = [
    (GOOD[3], 'req_total{path="/a",code="500"}', "0"),
    (GOOD[3], 'req_total{code="200",path="/a \\"q\\" \\\\ \\n"}', "3"),
    (GOOD[6], 'lat_bucket{le="+Inf",db="a"}', "3"),
    (GOOD[2], "up", "1"),
    (GOOD[2], 'up{job="x"}', None),
    (GOOD[6], 'lat_bucket{db="a"}', None),
]


def self_test():
    failures = 0
    for text in GOOD:
        try:
            parse(text)
        except Violation as e:
            failures += 1
            print("FAIL good input rejected (line %s: %s):\n%s" % (e.line, e.msg, text))
    for text, expect in BAD:
        try:
            parse(text)
        except Violation as e:
            if expect not in e.msg:
                failures += 1
                print("FAIL bad input rejected for the wrong reason: wanted %r, got %r:\n%s"
                      % (expect, e.msg, text))
        else:
            failures += 1
            print("FAIL bad input accepted (wanted %r):\n%s" % (expect, text))
    for text, selector, want in GETS:
        got = lookup(parse(text), selector)
        if got != want:
            failures += 1
            print("FAIL --get %s: wanted %r, got %r" % (selector, want, got))
    total = len(GOOD) + len(BAD) + len(GETS)
    print("promcheck self-test: %d/%d cases passed" % (total - failures, total))
    return 1 if failures else 0


def main(argv):
    ap = argparse.ArgumentParser(
        description="Strictly check Prometheus text format 0.0.4.")
    ap.add_argument("file", nargs="?", help="exposition file, or - for stdin")
    ap.add_argument("--get", action="append", default=[], metavar="SERIES",
                    help="print the value of this exact series, e.g. 'name{a=\"b\"}'")
    ap.add_argument("--families", action="store_true",
                    help="print each family's name and type")
    ap.add_argument("--self-test", action="store_true", help="run the built-in cases")
    args = ap.parse_args(argv)

    if args.self_test:
        return self_test()
    if args.file is None:
        ap.error("a FILE (or -) is required")
    src = "<stdin>" if args.file == "-" else args.file
    try:
        if args.file == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as f:
                raw = f.read()
    except OSError as e:
        print("promcheck: %s: %s" % (src, e.strerror), file=sys.stderr)
        return 1
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        print("promcheck: %s:%d: not valid UTF-8" % (src, line), file=sys.stderr)
        return 1
    try:
        expo = parse(text)
        status = 0
        if args.families:
            for fam in expo.families.values():
                print("%s %s" % (fam.name, fam.type))
        for selector in args.get:
            value = lookup(expo, selector)
            if value is None:
                print("promcheck: %s: no series %s" % (src, selector), file=sys.stderr)
                status = 1
            else:
                print(value)
    except Violation as e:
        if e.line:
            print("promcheck: %s:%d: %s" % (src, e.line, e.msg), file=sys.stderr)
        else:
            print("promcheck: %s" % e.msg, file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
