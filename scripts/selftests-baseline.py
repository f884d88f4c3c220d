#!/usr/bin/env python3
"""Writes docs/selftests-VERSION.md from the runs of scripts/selftests-baseline.sh.

Usage: selftests-baseline.py VERSION OBJS_DIR RUN_DIR SOURCE_PACKAGE_VERSION  (Markdown on stdout)

A program "meets" when the kernel's result meets its expectation (the run's `kernel_expected`):
its own annotations (__success / __failure / __msg with {{regex}} parts / __retval), or for a
program without any, its entry in a prog_tests/*.c table (the build's prog_tests.jsonl sidecar).
Programs with neither are counted apart with the kernel's verdict ("no annotation"). Every program of programs.tsv is in exactly one
column: met, not met, no annotation, or not judged (unreadable object, skipped at import, setup
error / not run).
"""
import collections
import json
import os
import re
import sys

version, objs, run_dir, src_version = sys.argv[1:5]


def norm(reason):
    """A reason as a group key: first line, numbers and quoted names generalised."""
    line = (reason or '').strip().splitlines()[0] if reason else ''
    line = re.sub(r"'[^']*'", "'…'", line)
    line = re.sub(r'`([^`/]*)/[^`]*`', r'`\1/…`', line)
    line = re.sub(r'\b(program|map|kfunc|func) [A-Za-z_][A-Za-z0-9_.]*', r'\1 …', line)
    line = re.sub(r'\b(R|r)\d+\b', 'R#', line)
    line = re.sub(r'\b\d+\b', 'N', line)
    line = re.sub(r'0x[0-9a-f]+', '0x…', line)
    return line[:140]


programs = collections.OrderedDict()  # (object, program) -> (section, needs)
with open(os.path.join(objs, 'programs.tsv')) as f:
    next(f)
    for line in f:
        o, p, sec, needs = line.rstrip('\n').split('\t')
        programs[(o, p)] = (sec, needs)

manifest = []
with open(os.path.join(objs, 'MANIFEST.tsv')) as f:
    next(f)
    manifest = [line.rstrip('\n').split('\t') for line in f]

unreadable, skipped = {}, {}
with open(os.path.join(run_dir, 'import.tsv')) as f:
    for line in f:
        parts = line.rstrip('\n').split('\t')
        if parts[1] == 'unreadable':
            unreadable[parts[0]] = parts[2]
        else:
            skipped[(parts[0], parts[2])] = parts[3]


def rows(mode):
    out = {}
    path = os.path.join(run_dir, f'{mode}.jsonl')
    if not os.path.exists(path):
        return out
    for line in open(path):
        r = json.loads(line)
        out[(os.path.basename(r['file']), r['case'])] = r
    return out


def classify(key, runs):
    """(column, reason) of one program."""
    o, _p = key
    needs = programs[key][1]
    if o in unreadable:
        return 'not judged', 'import: object unreadable: ' + norm(unreadable[o].split(': ', 2)[-1])
    if key in skipped:
        extra = f' (needs {needs})' if needs != '-' else ''
        return 'not judged', 'import: skipped: ' + norm(skipped[key]) + extra
    r = runs.get(key)
    if r is None:
        return 'not judged', 'no row in the run (lockstep lost the program)'
    if r['outcome'] != 'ran' or r.get('kernel_verdict') is None:
        return 'not judged', f"{r['outcome']}: " + norm(r.get('note') or r.get('kernel_message'))
    if r.get('kernel_expected') is None:
        msg = f": {norm(r.get('kernel_message'))}" if r['kernel_verdict'] == 'reject' else ''
        return 'no annotation', f"kernel {r['kernel_verdict']}{msg}"
    if r['kernel_expected']:
        return 'met', ''
    if (r.get('retval') or '').startswith('not met'):
        return 'not met', 'retval ' + norm(r['retval'])
    msg = r.get('kernel_message') or r['kernel_verdict']
    src = (r.get('expected') or {}).get('source') or ''
    table = ' [prog_tests table]' if src.startswith('prog_tests/') else ''
    return 'not met', f"kernel {r['kernel_verdict']}{table}: " + norm(msg)


modes = {m: rows(m) for m in ('no-testmod', 'testmod')}
objects = sorted({o for o, _ in programs} | set(unreadable))
cols = ['met', 'not met', 'no annotation', 'not judged']

out = []
w = out.append
w(f'# Spin-lock selftests of Debian linux-source-{version} through lockstep (baseline)\n')
w(f'Regenerate: `scripts/selftests-baseline.sh {version}` (compiles with '
  f'`scripts/build-selftest-objects.sh {version}` if needed, then runs `lockstep run --kernel '
  f'debian:{version}` over `~/.cache/lockstep/selftest-objs/{version}/` with `--no-testmod` and '
  f'with `--testmod`). Source: linux-source-{version} {src_version}. Loader: libbpf in the guest '
  '(`harness/lockstep-bpf/src/objload.rs`: the object as compiled, only the program under test '
  'autoloaded, as `test_loader.c` does).\n')
w('Columns: **met** = the kernel\'s result meets the program\'s expectation: its own annotations '
  '(`__success`, `__failure`, `__msg` with `{{regex}}` parts, matched in order over the full log; '
  '`__retval` against `BPF_PROG_TEST_RUN` after a successful load), or, for a program without '
  'annotations, its entry in a `prog_tests/*.c` table (`prog_tests.jsonl` beside the objects, '
  '`scripts/extract-prog-tests.py`); **not met** = it does not; **no annotation** = neither, the '
  'kernel verdict is given; **not judged** = no kernel verdict (object unreadable, setup error, '
  'crash, no row).\n')

files_ok = sum(1 for m in manifest if m[1] == 'ok')
w(f'## Compilation\n\n{len(manifest)} files selected, {files_ok} compiled, '
  f'{len(manifest) - files_ok} failed.\n')
for m in manifest:
    if m[1] != 'ok':
        w(f'- `{m[0]}`: {m[2]}')
w('')

for mode in ('no-testmod', 'testmod'):
    runs = modes[mode]
    total = collections.Counter()
    w(f'## Run `--{mode}`\n')
    w('| object | programs | ' + ' | '.join(cols) + ' |')
    w('|---|---:|' + '---:|' * len(cols))
    groups = collections.defaultdict(collections.Counter)
    for o in objects:
        progs = [k for k in programs if k[0] == o]
        c = collections.Counter()
        for k in progs:
            col, why = classify(k, runs)
            c[col] += 1
            if col in ('not met', 'not judged'):
                groups[o][(col, why)] += 1
            elif col == 'no annotation':
                groups[o][(col, why)] += 1
        total.update(c)
        total['programs'] += len(progs)
        w(f'| `{o}` | {len(progs)} | ' + ' | '.join(str(c[x]) for x in cols) + ' |')
    w(f'| **total** | {total["programs"]} | ' + ' | '.join(f'**{total[x]}**' for x in cols) + ' |\n')
    rv = collections.Counter()
    for r in runs.values():
        if r.get('retval'):
            rv[norm(r['retval']) if not r['retval'].startswith('met') else 'met'] += 1
    if rv:
        w('`__retval` (BPF_PROG_TEST_RUN after a successful load): ' + ', '.join(
            f'{n} {k}' for k, n in rv.most_common()) + '.\n')
    extra = sorted(k for k in runs if k not in programs)
    if extra:
        w(f'Rows for {len(extra)} programs that programs.tsv does not list: ' + ', '.join(
            f'`{o}:{p}`' for o, p in extra[:20]) + '.\n')
    w('Reasons per object (count, column, reason):\n')
    for o in objects:
        if not groups[o]:
            continue
        w(f'- `{o}`:')
        for (col, why), n in sorted(groups[o].items(), key=lambda x: (-x[1], x[0])):
            w(f'  - {n} {col}: {why}')
    w('')

needs = collections.Counter(v[1] for v in programs.values())
w('## Programs that need more than a load\n')
w('From each program\'s section (`programs.tsv` of the build): ' + ', '.join(
    f'{n} {k}' for k, n in needs.most_common() if k != '-') + '. No program of this set needs '
  'hardware (no offloaded XDP, no device-bound program).\n')
print('\n'.join(out))
