#!/usr/bin/env python3
"""Creates of NetworkPolicies per half second, per client (user), from audit logs:
completed creates, mean creates in flight, mean server latency."""
import json, sys, glob, collections
from datetime import datetime
def ts(s): return datetime.fromisoformat(s.replace('Z', '+00:00')).timestamp()
events = collections.defaultdict(list)
for path in sys.argv[1:]:
    for line in open(path):
        try: e = json.loads(line)
        except Exception: continue
        if e.get('stage') != 'ResponseComplete' or e.get('verb') != 'create': continue
        if (e.get('objectRef') or {}).get('resource') != 'networkpolicies': continue
        user = e['user']['username'].split(':')[-1]
        events[user].append((ts(e['requestReceivedTimestamp']), ts(e['stageTimestamp'])))
for user, ev in events.items():
    ev.sort()
    t0 = ev[0][0]; t1 = max(e for _, e in ev)
    print(f"{user}: {len(ev)} creates in {t1-t0:.2f} s, mean latency {sum(e-s for s,e in ev)/len(ev)*1000:.2f} ms")
    nb = int((t1 - t0) / 0.5) + 1
    done = [0]*nb; busy = [0.0]*nb; lat = [[] for _ in range(nb)]
    for s, e in ev:
        done[int((e - t0) / 0.5)] += 1
        lat[int((s - t0) / 0.5)].append(e - s)
        # time in flight per bin
        a = s
        while a < e:
            b = min(e, t0 + (int((a - t0) / 0.5) + 1) * 0.5)
            busy[int((a - t0) / 0.5)] += b - a
            a = b
    print("  done:     ", ' '.join(f"{d:4d}" for d in done))
    print("  in flight:", ' '.join(f"{b/0.5:4.1f}" for b in busy))
    print("  lat ms:   ", ' '.join(f"{(sum(l)/len(l)*1000 if l else 0):4.1f}" for l in lat))
