#!/usr/bin/env bash
# tests/crosswalk.sh - keep the crosswalks (README.md, and docs/*.md) pointing
# at the right lines.
#
# Each link in README.md or docs/*.md reads either
#   [FILE:FIRST-LAST](FILE#LFIRST-LLAST) `ANCHOR`   the block that starts with
#        the line beginning ANCHOR: in a .c file it ends at the next line that
#        is just "}" (a prototype, which ends with ");" before any "{", is
#        passed over); in a script, at the first line that does not end with a
#        backslash;
# or
#   [FILE:LINE](FILE#LLINE) `ANCHOR`                the first line that begins
#        with ANCHOR once its indentation is set aside.
# FILE is relative to the top of the repository; in docs/*.md the link's
# target is ../FILE#L..., so that it works where the page is read.
#   tests/crosswalk.sh        one line per link:
#                             DOC FILE FIRST LAST NOW_FIRST NOW_LAST TARGET ANCHOR
#                             (DOC is the Markdown file the link is in; test.sh
#                             fails when FIRST-LAST and NOW_FIRST-NOW_LAST differ;
#                             for a single line, FIRST = LAST; TARGET is "ok", or
#                             the link's target when it is not the one its text names)
#   tests/crosswalk.sh --fix  rewrite the numbers (and targets) in README.md and
#                             docs/*.md to where the blocks are now
set -euo pipefail
cd "$(dirname "$0")/.."

# block FILE ANCHOR: "first last" of the block that ANCHOR starts, or "0 0"
block() {
    local is_c=0
    [[ $1 == *.c ]] && is_c=1
    awk -v anchor="$2" -v is_c="$is_c" '
        first == 0 && index($0, anchor) == 1 { first = NR }
        first && is_c && /\);[ \t]*(\/\*.*\*\/)?[ \t]*$/ && !opened { first = 0; next }  # a prototype
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

# crosswalk DOC [--fix]: check (or renumber) the links in one Markdown file
crosswalk() {
    local doc=$1 mode=${2:-} prefix='' links text link file first last anchor single
    local target want now_first now_last
    [[ $doc == docs/* ]] && prefix=../
    # shellcheck disable=SC2016   # the backquotes are Markdown, not shell
    links=$(grep -oE '\[[a-z.]+:[0-9]+(-[0-9]+)?\]\([^)]*\) `[^`]+`' "$doc") || return 0
    text=$(cat "$doc")
    while IFS= read -r link; do
        [[ $link =~ ^\[([a-z.]+):([0-9]+)(-([0-9]+))?\]\(([^\)]*)\)\ \`([^\`]+)\`$ ]] || continue
        file=${BASH_REMATCH[1]} first=${BASH_REMATCH[2]} last=${BASH_REMATCH[4]}
        target=${BASH_REMATCH[5]} anchor=${BASH_REMATCH[6]}
        single=
        if [ -n "$last" ]; then
            want="$prefix$file#L$first-L$last"
            read -r now_first now_last <<<"$(block "$file" "$anchor")"
        else
            single=1 last=$first want="$prefix$file#L$first"
            read -r now_first now_last <<<"$(line "$file" "$anchor")"
        fi
        if [ "$mode" = --fix ]; then
            [ "$now_first" != 0 ] || { echo "crosswalk: $doc: no line of $file starts with: $anchor" >&2; exit 1; }
            if [ -n "$single" ]; then
                text=${text//"$link"/"[$file:$now_first]($prefix$file#L$now_first) \`$anchor\`"}
            else
                text=${text//"$link"/"[$file:$now_first-$now_last]($prefix$file#L$now_first-L$now_last) \`$anchor\`"}
            fi
        else
            [ "$target" = "$want" ] && target=ok
            echo "$doc $file $first $last $now_first $now_last $target $anchor"
        fi
    done <<<"$links"
    if [ "$mode" = --fix ]; then
        printf '%s\n' "$text" >"$doc"
    fi
}

for doc in README.md docs/*.md; do
    [ -f "$doc" ] || continue
    crosswalk "$doc" "${1:-}"
done
