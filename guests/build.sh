#!/usr/bin/env bash
# Builds the small guests from their sources with nasm. The built images are committed, so
# running them needs no toolchain; this script is how they were made (and a test checks the
# CPU test guests match a fresh build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v nasm >/dev/null || { echo "guests/build.sh: nasm is needed (apt-get install nasm)" >&2; exit 1; }
nasm -f bin -o "$here/hello/hello.bin" "$here/hello/hello.asm"
nasm -f bin -o "$here/bench/mix.bin" "$here/bench/mix.asm"
nasm -f bin -o "$here/rom/rom.bin" "$here/rom/rom.asm"
nasm -f bin -Ox -o "$here/vmstate/ticks.bin" "$here/vmstate/ticks.asm"
bash "$here/cpu-tests/build.sh"
for f in hello/hello.bin bench/mix.bin rom/rom.bin vmstate/ticks.bin; do
  printf '%-20s %7d bytes\n' "$f" "$(stat -c %s "$here/$f")"
done
