#!/usr/bin/env bash
# tests/crosswalk.sh - keep the README's crosswalk pointing at the right lines.
#
# Each link in README.md reads either
#   [FILE:FIRST-LAST](FILE#LFIRST-LLAST) `ANCHOR`   the block that starts with
#        the line beginning ANCHOR: in a .c file it ends at the next line that
#        is just "}" (a prototype, which ends with ");" before any "{", is
#        passed over); in a script, at the first line that does not end with a
#        backslash;
# or
#   [FILE:LINE](FILE#LLINE) `ANCHOR`                the first line that begins
#        with ANCHOR once its indentation is set aside.
#   tests/crosswalk.sh        one line per link: FILE FIRST LAST NOW_FIRST NOW_LAST ANCHOR
#                             (test.sh fails when FIRST-LAST and NOW_FIRST-NOW_LAST differ;
#                             for a single line, FIRST = LAST)
#   tests/crosswalk.sh --fix  rewrite README.md's numbers to where the blocks are now
set -euo pipefail
cd "$(dirname "$0")/.."

# block FILE ANCHOR: "first last" of the block that ANCHOR starts, or "0 0"
block() {
    local is_c=0
    [[ $1 == *.c ]] && is_c=1
    awk -v anchor="$2" -v is_c="$is_c" '
        first == 0 && index($0, anchor) == 1 { first = NR }
        first && is_c && /\);$/ && !opened { first = 0; next }    # a prototype, not the block
        first && is_c && $0 == "{" { opened = 1 }
        first && (is_c ? $0 == "}" : $0 !~ /\\$/) { print first, NR; found = 1; exit }
        END { if (!found) print 0, 0 }' "$1"
}

# line FILE ANCHOR: "n n" for the first line that begins with ANCHOR after
# its indentation, or "0 0"
line() {
    awk -v anchor="$2" '
        { text = $0; sub(/^[ \t]+/, "", text) }
        index(text, anchor) == 1 { print NR, NR; found = 1; exit }
        END { if (!found) print 0, 0 }' "$1"
}

# shellcheck disable=SC2016   # the backquotes are Markdown, not shell
links=$(grep -oE '\[[a-z.]+:[0-9]+(-[0-9]+)?\]\([^)]*\) `[^`]+`' README.md)
readme=$(cat README.md)
while IFS= read -r link; do
    [[ $link =~ ^\[([a-z.]+):([0-9]+)(-([0-9]+))?\]\([^\)]*\)\ \`([^\`]+)\`$ ]] || continue
    file=${BASH_REMATCH[1]} first=${BASH_REMATCH[2]} last=${BASH_REMATCH[4]} anchor=${BASH_REMATCH[5]}
    single=
    if [ -n "$last" ]; then
        read -r now_first now_last <<<"$(block "$file" "$anchor")"
    else
        single=1 last=$first
        read -r now_first now_last <<<"$(line "$file" "$anchor")"
    fi
    if [ "${1:-}" = --fix ]; then
        [ "$now_first" != 0 ] || { echo "crosswalk: no line of $file starts with: $anchor" >&2; exit 1; }
        if [ -n "$single" ]; then
            readme=${readme//"$link"/"[$file:$now_first]($file#L$now_first) \`$anchor\`"}
        else
            readme=${readme//"$link"/"[$file:$now_first-$now_last]($file#L$now_first-L$now_last) \`$anchor\`"}
        fi
    else
        echo "$file $first $last $now_first $now_last $anchor"
    fi
done <<<"$links"
if [ "${1:-}" = --fix ]; then
    printf '%s\n' "$readme" >README.md
fi
