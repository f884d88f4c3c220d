#!/usr/bin/env python3
"""Expectations that live in prog_tests/*.c tables, as a sidecar of the compiled objects.

Usage: extract-prog-tests.py SELFTESTS_DIR OBJS_DIR    (writes OBJS_DIR/prog_tests.jsonl)

Some selftests keep their expectations in the user-space half (tools/testing/selftests/bpf/
prog_tests/NAME.c) instead of decl tags: `{ "prog_name", "expected message" }` tables
(linked_list.c, spin_lock.c), lists of programs that must load (task_kfunc.c's
`success_tests[]`), or kfunc_call.c's `TC_FAIL(name, retval, msg)` / `TC_TEST(name, retval)`.
Each prog_tests file is run through the C preprocessor with its #include lines dropped (so its
own macros, like linked_list.c's TEST(), expand and line markers keep the source line), then its
static table initialisers are read. An entry names a program of an object that the file includes
as `OBJ.skel.h` (and that was compiled); entries naming no such program are reported on stderr.

One JSON object a line: object, program, verdict (accept|reject), msgs (lockstep's pattern
syntax: a plain substring, or `{{regex}}`; spin_lock.c matches with POSIX basic regcomp(), so its
messages become one `{{...}}` extended regex), retval (as written, or null), source
(prog_tests/FILE.c:LINE of the entry), how (which table kind).
"""
import json
import os
import re
import subprocess
import sys

st_dir, objs = sys.argv[1:3]
progs = {}  # object -> set of programs
with open(os.path.join(objs, 'programs.tsv')) as f:
    next(f)
    for line in f:
        o, p = line.split('\t')[:2]
        progs.setdefault(o, set()).add(p)

TOKEN = re.compile(r'''\s+|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[A-Za-z_]\w*|0[xX][0-9a-fA-F]+|\d+|->|\S''')


def unescape(lit):
    return bytes(lit[1:-1], 'utf-8').decode('unicode_escape').encode('latin-1').decode('utf-8')


def tokens(text):
    """(token, line) pairs of cpp output, line markers applied."""
    out, line = [], 1
    for raw in text.split('\n'):
        m = re.match(r'#\s*(\d+)\s+"([^"]*)"', raw)
        if m:
            line = int(m.group(1))
            continue
        for t in TOKEN.findall(raw):
            if not t.isspace():
                out.append((t, line))
        line += 1
    return out


def braced(toks, i):
    """Parses the initialiser starting at toks[i] == '{': (node, next index). A node is a list
    of items; an item is ('list', node, line) or ('expr', [tokens], line, designator)."""
    assert toks[i][0] == '{'
    i += 1
    items, cur, desig, line = [], [], None, None
    while True:
        t, ln = toks[i]
        if t == '{' and not cur:
            node, i = braced(toks, i)
            items.append(('list', node, ln, desig))
            desig = None
            continue
        if t in (',', '}'):
            if cur:
                items.append(('expr', cur, line, desig))
            cur, desig, line = [], None, None
            i += 1
            if t == '}':
                return items, i
            continue
        if t == '.' and not cur and toks[i + 2][0] == '=':
            desig = toks[i + 1][0]
            i += 3
            continue
        if line is None:
            line = ln
        cur.append(t)
        i += 1


def string_of(expr):
    """The concatenated string literals of an expression, or None if it is not one."""
    if expr and all(t.startswith('"') for t in expr):
        return ''.join(unescape(t) for t in expr)
    return None


def bre_to_pattern(bre):
    """POSIX basic regex (regcomp without REG_EXTENDED) as a lockstep `{{extended}}` pattern."""
    out, i = [], 0
    while i < len(bre):
        c = bre[i]
        if c == '\\' and i + 1 < len(bre):
            n = bre[i + 1]
            out.append(n if n in '+?(){}|' else '\\' + n)
            i += 2
            continue
        out.append('\\' + c if c in '+?(){}|' else c)
        i += 1
    return '{{' + ''.join(out) + '}}'


def source_line(lines, name, cpp_line):
    """The line of the source naming program `name` nearest to cpp's line (cpp's own line can
    be off after a multi-line macro definition); cpp's line where the name is built by a macro."""
    hits = [n for n, l in enumerate(lines, 1) if re.search(r'(?<![\w])' + re.escape(name) + r'(?![\w])', l)]
    if hits:
        return min(hits, key=lambda n: abs(n - cpp_line))
    # a macro call building the name from its first argument: `TEST(global, 16)`
    for n in sorted(range(max(1, cpp_line - 3), min(len(lines), cpp_line + 3) + 1), key=lambda n: abs(n - cpp_line)):
        m = re.search(r'\w+\(\s*(\w+)\s*,', lines[n - 1])
        if m and name.startswith(m.group(1) + '_'):
            return n
    return cpp_line


rows, unmatched = [], []
for fn in sorted(os.listdir(os.path.join(st_dir, 'prog_tests'))):
    if not fn.endswith('.c'):
        continue
    path = os.path.join(st_dir, 'prog_tests', fn)
    src = open(path, encoding='utf-8', errors='replace').read()
    skels = [s + '.bpf.o' for s in re.findall(r'#include\s+"([\w-]+)\.skel\.h"', src)]
    skels = [s for s in skels if s in progs]
    if not skels:
        continue
    uses_bre = 'match_regex(' in src
    stripped = re.sub(r'^\s*#\s*include\b.*$', '', src, flags=re.M)
    cpp = subprocess.run(['cpp', '-w', '-', '-o', '-'], input=stripped, capture_output=True, text=True)
    if cpp.returncode != 0:
        print(f'extract-prog-tests: {fn}: cpp failed: {cpp.stderr.strip()[:200]}', file=sys.stderr)
        continue
    toks = tokens(cpp.stdout)
    src_lines = src.split('\n')
    i = 0
    while i < len(toks):
        # `NAME [ ] = {` at the top of a `static` declaration
        if toks[i][0] == '[' and i + 3 < len(toks) and toks[i + 1][0] == ']' and toks[i + 2][0] == '=' \
                and toks[i + 3][0] == '{':
            name = toks[i - 1][0]
            node, j = braced(toks, i + 3)
            for item in node:
                entry = None
                if item[0] == 'expr':
                    p = string_of(item[1])
                    if p is not None and 'success' in name:
                        entry = (p, 'accept', [], None, 'success list ' + name)
                elif item[0] == 'list':
                    fields = item[1]
                    named = {f[3]: f for f in fields if f[3]}
                    if 'prog_name' in named:
                        p = string_of(named['prog_name'][1])
                        msg_f = named.get('expected_err_msg')
                        msg = string_of(msg_f[1]) if msg_f and msg_f[0] == 'expr' else None
                        rv = ' '.join(named['retval'][1]) if 'retval' in named else None
                        if p is not None:
                            if msg is not None and rv in (None, '0'):
                                entry = (p, 'reject', [msg], None, 'failure table ' + name)
                            else:
                                entry = (p, 'accept', [msg] if msg else [], rv, 'table ' + name)
                    elif len(fields) >= 2 and all(f[0] == 'expr' for f in fields[:2]):
                        p, msg = string_of(fields[0][1]), string_of(fields[1][1])
                        if p is not None and msg is not None:
                            msgs = [bre_to_pattern(msg) if uses_bre else msg]
                            entry = (p, 'reject', msgs, None, 'failure table ' + name)
                if entry is None:
                    continue
                p, verdict, msgs, rv, how = entry
                objs_with = [o for o in skels if p in progs[o]]
                if not objs_with:
                    unmatched.append(f'{fn}:{item[2]}: {p}')
                    continue
                line = source_line(src_lines, p, item[2])
                for o in objs_with:
                    rows.append({'object': o, 'program': p, 'verdict': verdict, 'msgs': msgs,
                                 'retval': rv, 'source': f'prog_tests/{fn}:{line}', 'how': how})
            i = j
            continue
        i += 1

with open(os.path.join(objs, 'prog_tests.jsonl'), 'w') as f:
    for r in rows:
        f.write(json.dumps(r) + '\n')
for u in unmatched:
    print(f'extract-prog-tests: no compiled program for {u}', file=sys.stderr)
print(f'extract-prog-tests: {len(rows)} expectations for '
      f'{len(set(r["object"] for r in rows))} objects in {objs}/prog_tests.jsonl', file=sys.stderr)
