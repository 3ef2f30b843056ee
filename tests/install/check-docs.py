#!/usr/bin/env python3
"""Fails when a VMMU_API declaration in the public headers has no /** */ doc
comment right above it (a blank line or another declaration in between counts
as missing), or when a documented fallible (int-returning) function says
nothing about its return value."""
import re, sys, pathlib

bad = []
count = 0
for hdr in sorted(pathlib.Path(sys.argv[1]).glob('*.h')):
    lines = hdr.read_text().split('\n')
    for i, line in enumerate(lines):
        m = re.match(r'\s*VMMU_API\b(.*?)\b(vmmu_[a-z0-9_]+)\s*\(', line)
        if not m:
            continue
        count += 1
        name = m.group(2)
        j = i - 1
        # a block of consecutive declarations may share one comment that names each of them
        while j >= 0 and re.match(r'\s*VMMU_API\b', lines[j]):
            j -= 1
        shared = j != i - 1
        if j < 0 or not lines[j].rstrip().endswith('*/'):
            bad.append(f'{hdr.name}:{i + 1}: {name}: no doc comment right above')
            continue
        k = j
        while k >= 0 and '/**' not in lines[k] and not lines[k].lstrip().startswith('/*'):
            k -= 1
        if k < 0 or '/**' not in lines[k]:
            bad.append(f'{hdr.name}:{i + 1}: {name}: comment above is not a /** doc comment')
            continue
        doc = '\n'.join(lines[k:j + 1])
        if shared and name.split('_', 2)[-1] not in doc:
            bad.append(f'{hdr.name}:{i + 1}: {name}: shares a comment that does not name it')
            continue
        rettype = m.group(1)
        if re.search(r'(?<!unsigned )\b(int|int64_t)\s*$', rettype.strip()) and not re.search(r'[Rr]eturn|-E[A-Z]+', doc):
            bad.append(f'{hdr.name}:{i + 1}: {name}: returns int but the comment names no return value / -errno')
for b in bad:
    print('FAIL:', b)
if not count:
    print('FAIL: no VMMU_API declarations found')
    sys.exit(1)
print(f'{count} public declarations checked, {len(bad)} without a proper doc comment')
sys.exit(1 if bad else 0)
