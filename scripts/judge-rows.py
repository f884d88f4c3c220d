#!/usr/bin/env python3
"""scripts/judge-rows.py KERNEL.json MODEL.json [--by-object] [--disagree] [--reasons N]

KERNEL.json: JSON lines of `lockstep run --json` (kernel rows; their model columns are ignored).
MODEL.json: JSON lines of `lockstep check --json` (one profile).
Matches rows by (file basename, case) and classifies as compare.rs classify_verdicts does:
unsupported / infra (no kernel verdict) / verdict / message (first line) / insn / agree."""
import json, sys, os, collections, argparse

ap = argparse.ArgumentParser()
ap.add_argument("kernel"); ap.add_argument("model")
ap.add_argument("--by-object", action="store_true")
ap.add_argument("--disagree", action="store_true")
ap.add_argument("--reasons", type=int, default=0)
a = ap.parse_args()

def rows(p):
    with open(p) as f:
        for l in f:
            l = l.strip()
            if l.startswith("{"):
                yield json.loads(l)

def key(r):
    return (os.path.basename(r["file"]), r["case"])

def fl(m):
    return (m or "").split("\n")[0].rstrip()

kern = {key(r): r for r in rows(a.kernel)}
model = {key(r): r for r in rows(a.model)}
cls = collections.Counter(); byobj = collections.defaultdict(collections.Counter)
reasons = collections.Counter(); dis = []
for k, m in model.items():
    kr = kern.get(k)
    if m["verdict"] == "unsupported":
        c = "unsupported"; reasons[fl(m.get("message"))] += 1
    elif kr is None:
        c = "no_kernel_row"
    elif kr.get("kernel_verdict") not in ("accept", "reject"):
        c = "infra"
    elif kr["kernel_verdict"] != m["verdict"]:
        c = "verdict"
    elif m["verdict"] == "accept":
        c = "agree"
    elif fl(m.get("message")) != fl(kr.get("kernel_message")) or not fl(m.get("message")):
        c = "message"
    elif m.get("insn") != kr.get("kernel_insn"):
        c = "insn"
    else:
        c = "agree"
    cls[c] += 1; byobj[k[0]][c] += 1
    if c in ("verdict", "message", "insn"):
        dis.append((k, c, m, kr))
missing = [k for k in kern if k not in model]
n = sum(cls.values())
judged = cls["agree"] + cls["verdict"] + cls["message"] + cls["insn"]
print(f"programs {n}  judged {judged} ({100*judged/max(n,1):.1f}%)  agree {cls['agree']}  "
      f"disagree {cls['verdict']+cls['message']+cls['insn']}  unsupported {cls['unsupported']}  "
      f"infra {cls['infra']}  no_kernel_row {cls['no_kernel_row']}  kernel rows without model row {len(missing)}")
if a.by_object:
    for o in sorted(byobj):
        c = byobj[o]; t = sum(c.values())
        j = c["agree"] + c["verdict"] + c["message"] + c["insn"]
        print(f"  {o:45s} {t:4d} judged {j:4d} agree {c['agree']:4d} unsup {c['unsupported']:4d} other {t-j-c['unsupported']}")
if a.disagree:
    for k, c, m, kr in dis:
        print(f"DISAGREE {c} {k[0]} {k[1]}: model {m['verdict']} {m.get('insn')} {fl(m.get('message'))!r} / "
              f"kernel {kr['kernel_verdict']} {kr.get('kernel_insn')} {fl(kr.get('kernel_message'))!r}")
if a.reasons:
    print("unsupported reasons:")
    for r, c in reasons.most_common(a.reasons):
        print(f"  {c:4d} {r[:160]}")
