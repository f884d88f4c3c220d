#!/usr/bin/env python3
"""Record the instruction index of every kernel rejection from `lockstep run --json` output into
tests/corpus/kernel-insns.json, which scripts/gen-corpus.py uses for the corpus expectations.

Usage: scripts/measure-insns.py RUN.jsonl [RUN.jsonl...]
   e.g. lockstep run -k debian:6.12 -k debian:7.2 -k debian:7.3 --json run.jsonl
"""
import json
import pathlib
import sys

out_path = pathlib.Path(__file__).resolve().parent.parent / "tests/corpus/kernel-insns.json"
data = {"measured_on": {}, "insns": {}}
for f in sys.argv[1:]:
    for line in open(f):
        r = json.loads(line)
        if r["outcome"] != "ran" or r["kernel_verdict"] != "reject" or r["kernel_insn"] is None:
            continue
        data["measured_on"][r["kernel"]] = {"profile": r["profile"], "package_version": r["package_version"]}
        data["insns"].setdefault(r["case"], {})[r["profile"]] = r["kernel_insn"]
data["insns"] = dict(sorted(data["insns"].items()))
out_path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
print(f"{len(data['insns'])} cases, kernels: {', '.join(sorted(data['measured_on']))} -> {out_path}")
