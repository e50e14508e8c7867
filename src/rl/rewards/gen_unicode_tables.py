# Generates src/rl/rewards/unicode_tables.cpp (python3 gen_unicode_tables.py > unicode_tables.cpp, then wrap lines) from Python's unicodedata (the same data the
# official IFEval checkers use through str.isalnum/isupper/islower/lower and re's \w, \s).
import sys, unicodedata
def ranges(pred):
    out=[]; start=None
    for cp in range(0x110000):
        ok=pred(cp)
        if ok and start is None: start=cp
        if not ok and start is not None: out.append((start,cp-1)); start=None
    if start is not None: out.append((start,0x10FFFF))
    return out
def ch(cp): return chr(cp)
word = ranges(lambda cp: ch(cp).isalnum() or cp==0x5F)
upper = ranges(lambda cp: ch(cp).isupper())
lower = ranges(lambda cp: ch(cp).islower())
title = ranges(lambda cp: ch(cp).istitle() and not ch(cp).isupper() and unicodedata.category(ch(cp))=='Lt')
space = ranges(lambda cp: ch(cp).isspace())
# lowercase mapping: runs (start, end, delta, stride) where lower(cp) = cp + delta for cp in start..end step stride
pairs=[]
for cp in range(0x110000):
    l=ch(cp).lower()
    if len(l)==1 and ord(l)!=cp: pairs.append((cp, ord(l)-cp))
runs=[]
for cp,d in pairs:
    if runs:
        s,e,dd,st=runs[-1]
        if dd==d and (cp-e)==st and (st in (1,2)):
            runs[-1]=(s,cp,dd,st); continue
        if dd==d and s==e and cp-e in (1,2):
            runs[-1]=(s,cp,dd,cp-e); continue
    runs.append((cp,cp,d,1))
def emit(name, rs):
    body=",".join(f"{{0x{a:X},0x{b:X}}}" for a,b in rs)
    return f"const Range {name}[] = {{{body}}};\nconst size_t {name}_size = {len(rs)};\n"
print("// Generated from Python " + sys.version.split()[0] + " unicodedata (Unicode " + unicodedata.unidata_version + ") by the")
print("// src/rl/rewards/gen_unicode_tables.py; do not edit by hand.")
print('#include "rl/rewards/unicode_text.h"\n')
print("namespace temper::utext {\n")
print(emit("kWord", word)); print(emit("kUpper", upper)); print(emit("kLower", lower)); print(emit("kTitle", title)); print(emit("kSpace", space))
body=",".join(f"{{0x{s:X},0x{e:X},{d},{st}}}" for s,e,d,st in runs)
print(f"const LowerRun kLowerRuns[] = {{{body}}};\nconst size_t kLowerRuns_size = {len(runs)};\n")
print("}  // namespace temper::utext")
