#!/usr/bin/env python3
"""Per-half-second CPU (cores) of the operator, each sampled process and the machine (busy, idle, iowait, steal)."""
import sys
rows = []
for line in open(sys.argv[1]):
    parts = line.strip().split(' | ')
    head = parts[0].split()
    if len(head) < 4: continue
    t = float(head[0]); op = int(head[2]) + int(head[3])
    procs = {}; stat = None
    for p in parts[1:]:
        f = p.split()
        if f and f[0] == 'cpu':
            v = list(map(int, f[1:]))
            stat = (v[0]+v[1]+v[2]+v[5]+v[6], v[3], v[4], v[7])
        elif len(f) == 3: procs[f[0]] = int(f[1]) + int(f[2])
    rows.append((t, op, procs, stat))
hz = 100
names = sorted(rows[0][2])
print("t      op    " + ' '.join(f"{n[:10]:>10}" for n in names) + "   busy  idle iowait steal")
prev = rows[0]
tot = None
for r in rows[1:]:
    if r[0] - prev[0] >= 0.5:
        dt = r[0] - prev[0]
        line = f"{r[0]-rows[0][0]:5.1f} {(r[1]-prev[1])/hz/dt:5.2f} "
        line += ' '.join(f"{(r[2].get(n,0)-prev[2].get(n,0))/hz/dt:10.2f}" for n in names)
        if r[3] and prev[3]:
            line += ' ' + ' '.join(f"{(a-b)/hz/dt:5.2f}" for a, b in zip(r[3], prev[3]))
        print(line)
        prev = r
