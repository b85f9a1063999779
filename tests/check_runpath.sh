#!/bin/sh
# Every RPATH and RUNPATH entry of shmgemm's programs and library, in the build tree and once
# installed, must be an absolute folder or start with $ORIGIN: an empty or relative entry makes
# the dynamic loader search the current directory, where anyone may have put a library.
# Usage: check_runpath.sh BUILD_DIR
set -eu
build=$1
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
bad=0 checked=0
for f in $(find "$build" "$prefix" -type f \( -perm -u+x -o -name '*.so*' \) \
             \( -path '*/bin/*' -o -path '*/lib*' -o -name 'libshmgemm.so*' \) ! -path '*/CMakeFiles/*'); do
  readelf -h "$f" >/dev/null 2>&1 || continue
  checked=$((checked + 1))
  for path in $(readelf -d "$f" | sed -n 's/.*R\(UN\)\{0,1\}PATH.*\[\(.*\)\]/\2/p'); do
    # ':a::b:' -> one entry a line, empty ones included.
    printf '%s\n' "$path" | awk -v RS=: -v f="$f" '
      { sub(/\n$/, "") }
      $0 == "" || ($0 !~ /^\// && $0 !~ /^\$ORIGIN/) { printf "%s: unsafe entry \"%s\"\n", f, $0; bad = 1 }
      END { exit bad }' || bad=1
  done
done
echo "$checked files checked"
[ "$checked" -gt 3 ] || { echo "too few files found"; exit 1; }

# The effect: a library planted in the current directory under a name shmgemm loads
# (libfmt.so.9, libopenblas.so.0) must not run.
plant=$(mktemp -d)
trap 'rm -rf "$prefix" "$plant"' EXIT
printf '#include <stdio.h>\n__attribute__((constructor)) static void planted(void) {\n  FILE* f = fopen("%s/ran", "w"); if (f) fclose(f);\n}\n' "$plant" >"$plant/planted.c"
if cc -shared -fPIC -o "$plant/planted.so" "$plant/planted.c" 2>/dev/null; then
  for lib in libfmt.so.9 libopenblas.so.0; do cp "$plant/planted.so" "$plant/$lib"; done
  for exe in "$build/bin/shmgemm" "$prefix/bin/shmgemm"; do
    (cd "$plant" && "$exe" gc --dry-run >/dev/null 2>&1) || true
    if [ -e "$plant/ran" ]; then echo "$exe: loaded a library from the current directory"; bad=1; fi
    rm -f "$plant/ran"
  done
  echo "planted libraries: not loaded"
fi
exit $bad
