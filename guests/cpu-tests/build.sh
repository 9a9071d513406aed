#!/usr/bin/env bash
# Assembles the CPU test guests: guests/cpu-tests/*.asm -> bin/*.bin (or into the
# directory given as $1), and writes bin/SHA256SUMS.
#
# The images are committed so that nobody needs nasm to run them. The build is
# reproducible: nasm's flat binary output holds no timestamps or paths, and the
# options are fixed here (-Ox is nasm's default and is named so that a different
# default cannot change the encodings). Built with NASM 2.16.01; another version
# may pick different encodings for the same source, which the check in
# guests/test/cpu-tests.test.ts reports as "committed images are the build of
# their sources".
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/bin}

command -v nasm >/dev/null || { echo "build.sh: nasm not found (apt-get install nasm)" >&2; exit 1; }
mkdir -p "$out"

for src in "$here"/*.asm; do
  name=$(basename "$src" .asm)
  nasm -f bin -Ox -I "$here/" -o "$out/$name.bin" "$src"
done

(cd "$out" && LC_ALL=C sha256sum -- *.bin > SHA256SUMS)
