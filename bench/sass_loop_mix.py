"""Instruction mix of the main loop of every GEMM kernel instantiation in a SASS listing.

The main loop is taken to be the longest backward branch of each function (for the tiled GEMM,
the loop over 16-deep slices of the reduction). Counts are static (instructions in the loop
body, once each), so for an issue-bound kernel the share of FFMA among them bounds the fraction
of the FP32 peak the loop can reach. Version 5's loops multiply on the tensor cores instead:
HMMA (one m16n8k8 TF32 product, 1024 multiply-adds per warp; three per float32-class product)
in place of FFMA (32 per warp). No GPU needed: the listing comes from cuobjdump -sass.
Usage: sass_loop_mix.py LISTING.sass [name-regex]   (prints a markdown table)
"""
import collections
import re
import sys


def demangle_gemm(name):
    """Tile, flags and loader names out of gemm::gemm_kernel<Tile<BM,BN,TM,TN,MIN>, A_K_FAST,
    B_N_FAST, DOUBLE_BUF, VEC, MMA, ALoad, BLoad, Store>'s mangled name."""
    m = re.search(r'TileILi(\d+)ELi(\d+)ELi(\d+)ELi(\d+)ELi(\d+)EEELb(\d)ELb(\d)ELb(\d)ELb(\d)ELb(\d)E(.*)', name)
    if not m:
        return None
    bm, bn, tm, tn, _, akf, bnf, dbuf, vec, mma, rest = m.groups()
    loaders = re.findall(r'(Im2colPool2|Im2colFwd|Im2colT|DyGatherS1|DyGather|WTrans|XtOnes|MatAILb[01]|MatBILb[01]|'
                         r'StoreBiasRelu|StorePool2|StorePlain|StoreWeightBias|StoreScaled)', rest)
    loaders = [l.replace('ILb0', '').replace('ILb1', '^T') for l in loaders]
    return {'tile': f"{bm}x{bn} ({tm}x{tn}), A {'k' if akf == '1' else 'm'}-fast, "
                    f"B {'n' if bnf == '1' else 'k'}-fast",
            'version': '5 (mma)' if mma == '1' else
                       ('4 (vec)' if vec == '1' else ('2-3' if dbuf == '1' else '1')),
            'loaders': ' '.join(loaders)}


def main():
    text = open(sys.argv[1]).read()
    pat = sys.argv[2] if len(sys.argv) > 2 else 'gemm_kernel'
    print('| loaders | tile | version | loop instructions | FFMA | HMMA | multiply-adds per instruction | LDG | LDS | other |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for f in re.split(r'\n\s+Function : ', text)[1:]:
        name = f.split('\n', 1)[0].strip()
        if not re.search(pat, name):
            continue
        ins = []
        for line in f.split('\n'):
            m = re.match(r'\s+/\*([0-9a-f]{4,})\*/\s+(.*?);', line)
            if m:
                ins.append((int(m.group(1), 16), m.group(2).strip()))
        loop = None
        for addr, text_ in ins:
            m = re.search(r'BRA\s+(?:`\(\.L_x_\d+\)\s*)?0x([0-9a-f]+)', text_)
            if m:
                target = int(m.group(1), 16)
                if target < addr and (loop is None or addr - target > loop[1] - loop[0]):
                    loop = (target, addr)
        if loop is None:
            continue
        ops = collections.Counter()
        for addr, text_ in ins:
            if loop[0] <= addr <= loop[1]:
                op = re.sub(r'^@!?U?P\w+\s+', '', text_).split()[0]
                ops[op.split('.')[0]] += 1
        total = sum(ops.values())
        d = demangle_gemm(name) or {'tile': '?', 'version': '?', 'loaders': name[:60]}
        other = total - ops['FFMA'] - ops['HMMA'] - ops['LDG'] - ops['LDS']
        # useful multiply-adds per warp instruction: 32 per FFMA, 1024/3 per 3xTF32 HMMA
        fma = 32 * ops['FFMA'] + 1024 * ops['HMMA'] / 3
        print(f"| {d['loaders']} | {d['tile']} | {d['version']} | {total} | {ops['FFMA']} | "
              f"{ops['HMMA']} | {fma / total:.1f} | {ops['LDG']} | {ops['LDS']} | {other} |")


if __name__ == '__main__':
    main()
