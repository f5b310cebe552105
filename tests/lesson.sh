#!/usr/bin/env bash
# tests/lesson.sh - the shape of the lesson, as server.c's header and the
# README promise it (issue "The lesson reads in ten minutes"):
#   - part 1 of server.c, from line 1 to the first banner that names PART 2,
#     BEYOND or MACHINERY, is at most 550 lines;
#   - it opens with the story of one connection, whose steps 1 to 5 each name
#     the section that tells them, and those sections follow in that order;
#   - every "section N, function" of the header's map is defined in section N,
#     every gencerts.sh step it quotes is in gencerts.sh, and every README
#     heading it names is a heading of README.md;
#   - part 2 touches part 1 in one call, part2_route;
#   - README.md is at most 3,000 words.
# Prints one "ok NAME" or "FAIL NAME: WHY" line per check (test.sh counts
# them); exits 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

failed=0
check() {   # check NAME CONDITION-STATUS [WHY]
    if [ "$2" -eq 0 ]; then
        echo "ok $1"
    else
        echo "FAIL $1: ${3:-}"
        failed=1
    fi
}

end=$(grep -nE '^/\*.*(PART 2|BEYOND|MACHINERY).*\*/$' server.c | head -n 1 | cut -d: -f1)
[ -n "$end" ] || end=999999
[ "$end" -le 550 ]
check "server.c: part 1 ends at line $end (at most 550)" $? "move what is not the lesson below the banner"

# banner N: the line of part 1's banner "/* ==== N. ..."
banner() { awk -v n="$1" -v end="$end" 'NR < end && $0 ~ "^/\\* =+ " n "\\. " { print NR; exit }' server.c; }
story=$(grep -n '^/\* =* The story of one connection' server.c | head -n 1 | cut -d: -f1)
first=$(banner 1)
[ -n "$story" ] && [ -n "$first" ] && [ "$story" -lt "$first" ]
check "server.c: the story of one connection comes before section 1" $? \
    "story at line ${story:-none}, section 1 at ${first:-none}"

body=$(awk -v from="${story:-0}" 'NR > from && /^static void serve_connection\(/ { on = 1 }
    on { print } on && $0 == "}" { exit }' server.c)
# its comments as one line, so that a step may take two lines
flat=$(tr '\n' ' ' <<<"$body" | sed -E 's/ +\*? +/ /g')
previous=0
for n in 1 2 3 4 5; do
    at=$(banner "$n")
    grep -qE "(^| )$n\\. .{0,240}Section $n\\." <<<"$flat"
    told=$?
    [ "$told" -eq 0 ] && [ -n "$at" ] && [ "$at" -gt "$previous" ]
    check "server.c: the story's step $n names section $n, which comes next in part 1" $? \
        "step found: $([ "$told" -eq 0 ] && echo yes || echo no); banner at line ${at:-none}"
    previous=${at:-$previous}
done

# The map: lines of the header comment like "...   section 3, read_names"
header=$(awk 'NR > 1 && /^ \*\// { exit } { print }' server.c)
while read -r n names; do
    from=$(awk -v n="$n" '$0 ~ "^/\\* =+ " n "\\. " { print NR; exit }' server.c)
    to=$(awk -v from="${from:-0}" 'NR > from && /^\/\* =+ / { print NR; exit }' server.c)
    for name in ${names//,/ }; do
        at=$(awk -v name="$name" 'index($0, "static") == 1 && index($0, " " name "(") ||
            index($0, "*" name "(") { line = NR } line && /^\{$/ { print line; exit }
            line && /\);$/ { line = 0 }' server.c)
        [ -n "$from" ] && [ -n "$to" ] && [ -n "$at" ] && [ "$at" -gt "$from" ] && [ "$at" -lt "$to" ]
        check "server.c's map: $name is in section $n" $? "defined at line ${at:-none}; section $n: ${from:-none}-${to:-none}"
    done
done < <(sed -nE 's/.* section ([0-9]+), ([a-z_]+(, [a-z_]+)*)$/\1 \2/p' <<<"$header")

while read -r quoted; do
    text=${quoted%...}
    text=${text#... }
    grep -qF "$text" gencerts.sh
    check "server.c's map: gencerts.sh has the step \"$quoted\"" $?
done < <(grep -oE 'gencerts\.sh, "[^"]+"(, "[^"]+")*' <<<"$header" | grep -oE '"[^"]+"' | tr -d '"')

while read -r heading; do
    grep -qE "^#+ $heading\$" README.md
    check "server.c's map: README.md has the heading \"$heading\"" $?
done < <(grep -oE 'README\.md, "[^"]+"' <<<"$header" | sed -E 's/.*"(.*)"/\1/')

calls=$(head -n "$end" server.c | grep -cE 'part2_route\(s, ')
others=$(head -n "$end" server.c | grep -cE '\b(enroll_form|enroll_bundle|certificates_page|revoke_certificate|add_device|takes_post)\b')
[ "$calls" -eq 1 ] && [ "$others" -eq 0 ]
check "server.c: part 2 touches part 1 in one call (part2_route)" $? \
    "$calls calls of part2_route, $others other part-2 names in part 1"

words=$(wc -w <README.md)
[ "$words" -le 3000 ]
check "README.md: $words words (at most 3,000)" $? "move details to docs/"

exit "$failed"
