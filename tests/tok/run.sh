#!/bin/sh
# tests/tok/run.sh - the committed Unicode tables are exactly what the
# generator produces from Debian's UnicodeData.txt (package unicode-data).
cd "$(dirname "$0")/../.." || exit 1
pass=0
fail=0
src=/usr/share/unicode/UnicodeData.txt
if [ ! -r "$src" ]; then
    echo "not ok - $src missing (install the unicode-data package)"
    fail=$((fail + 1))
elif /usr/bin/python3 scripts/gen-unicode-tables.py "$src" | cmp -s - src/engine/unicode_data.c; then
    echo "ok - src/engine/unicode_data.c matches scripts/gen-unicode-tables.py"
    pass=$((pass + 1))
else
    echo "not ok - src/engine/unicode_data.c differs from the generator's output"
    fail=$((fail + 1))
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
