"""Check that only the AVX2/AVX-512 kernel variants use AVX instructions.

    python scripts/check_isa_objects.py [path/to/_C.so]

torch_ops compiles its vectorised CPU kernels once per instruction set
(csrc/include/torch_ops/cpu_isa.h) and picks one at run time, so the library must load
and run on a CPU without AVX. Any function outside the AVX2/AVX512 namespaces that
uses a VEX/EVEX instruction (a `v...` mnemonic, or a ymm/zmm/mask register) would crash
such a CPU: e.g. an inline function from a header whose AVX2-compiled copy the linker
kept. Exit status 1 lists them.
"""

import glob
import os
import re
import subprocess
import sys

ALLOWED = re.compile(r"\b(AVX2|AVX512)::")
FUNC = re.compile(r"^[0-9a-f]+ <(.+)>:$")
VEX = re.compile(r"^\s+[0-9a-f]+:\s+(?:[0-9a-f]{2} )+\s*(v[a-z0-9]+)\b|%[yz]mm\d|%k[0-7]\b")


def library_path() -> str:
    if len(sys.argv) > 1:
        return sys.argv[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    built = glob.glob(os.path.join(root, "torch_ops", "_C.*.so"))
    if not built:
        sys.exit(f"no built library in {root}/torch_ops; build first (pip install --no-build-isolation -e .)")
    return built[0]


def main() -> int:
    path = library_path()
    dis = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", path], capture_output=True, text=True,
                         check=True).stdout
    bad, func, checked = {}, None, 0
    for line in dis.splitlines():
        m = FUNC.match(line)
        if m:
            func = m.group(1)
            checked += 1
            continue
        if func is None or ALLOWED.search(func):
            continue
        ins = line.split("\t")
        text = "\t".join(ins[1:]) if len(ins) > 1 else ""
        mnemonic = text.split()[0] if text.split() else ""
        if mnemonic.startswith("v") or re.search(r"%[yz]mm\d|%k[0-7]\b", text):
            bad.setdefault(func, []).append(text.strip())
    if bad:
        print(f"{path}: {len(bad)} function(s) outside the AVX2/AVX512 kernels use AVX instructions:")
        for f, ins in sorted(bad.items()):
            print(f"  {f}: {ins[0]} ({len(ins)} instruction(s))")
        return 1
    print(f"{path}: {checked} functions checked; AVX instructions only in the AVX2/AVX512 kernel variants")
    return 0


if __name__ == "__main__":
    sys.exit(main())
