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
previous_at=0
previous_told=0
for n in 1 2 3 4 5; do
    at=$(banner "$n")
    title=$(sed -nE "${at:-1}s|^/\\* =+ $n\\. (.*[^ ]) =+ \\*/\$|\\1|p" server.c)
    # where the story tells step n: "n. TITLE ... Section n."
    told=$(awk -v s="$flat" -v step="$n. $title" -v sect="Section $n." 'BEGIN {
        i = index(s, step); j = i ? index(substr(s, i), sect) : 0
        print (i && j && j < 400) ? i : 0 }')
    [ -n "$at" ] && [ "$at" -gt "$previous_at" ] && [ "$told" -gt "$previous_told" ]
    check "server.c: story step $n, \"$n. ${title:-?}\", names section $n, and both come in order" $? \
        "banner at line ${at:-none}; the step told at ${told:-0} (the one before: $previous_told)"
    previous_at=${at:-$previous_at}
    previous_told=${told:-$previous_told}
done

# The map: lines of the header comment like "...   section 3, read_names"
header=$(awk 'NR > 1 && /^ \*\// { exit } { print }' server.c)
while read -r n names; do
    from=$(awk -v n="$n" '$0 ~ "^/\\* =+ " n "\\. " { print NR; exit }' server.c)
    to=$(awk -v from="${from:-0}" 'NR > from && /^\/\* =+ / { print NR; exit }' server.c)
    for name in ${names//,/ }; do
        at=$(awk -v name="$name" 'index($0, "static") == 1 && index($0, " " name "(") ||
            index($0, "*" name "(") { line = NR } line && /^\{$/ { print line; exit }
            line && /\);[ \t]*(\/\*.*\*\/)?[ \t]*$/ { line = 0 }' server.c)
        [ -n "$from" ] && [ -n "$to" ] && [ -n "$at" ] && [ "$at" -gt "$from" ] && [ "$at" -lt "$to" ]
        check "server.c's map: $name is in section $n" $? "defined at line ${at:-none}; section $n: ${from:-none}-${to:-none}"
    done
done < <(sed -nE 's/.* section ([0-9]+), ([a-z_]+(, [a-z_]+)*)$/\1 \2/p' <<<"$header")

map=$(sed -n '/WHERE EACH STEP OF THE TUTORIAL LIVES/,/READING ORDER/p' <<<"$header" | sed '1d;$d' |
    sed -E 's/^ \* ?//' | grep -v '^ *$')
while IFS= read -r row; do
    [[ $row =~ \ (section\ [0-9]+,\ [a-z_]+(,\ [a-z_]+)*|gencerts\.sh,\ \"[^\"]+\"(,\ \"[^\"]+\")*|README\.md,\ \"[^\"]+\"(\;\ test\.sh)?)$ ]]
    check "server.c's map: the row \"${row:0:50}...\" says where, in a form this script checks" $?
done <<<"$map"
for step in "openssl req -x509" "openssl req -newkey" "openssl x509 -req" "openssl pkcs12 -export" \
    "const opts = { key, cert, ca }" "requestCert: true, rejectUnauthorized: false" \
    "app.get('/'), app.get('/authenticate')" "req.client.authorized" \
    "req.connection.getPeerCertificate()" "res.send(" "listen(9999)" "curl --cert alice.p12" \
    "alice.p12 into a browser"; do
    grep -qF -- "$step" <<<"$map"
    check "server.c's map names the tutorial's step: $step" $?
done

while read -r quoted; do
    text=${quoted%...}
    text=${text#... }
    grep -E '^step "' gencerts.sh | grep -qF "$text"
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

# (d) Every prototype in part 1 that names its section: the function is
# defined in that section (between its banner and the next).
while read -r name sect; do
    from=$(awk -v s="$sect" '$0 ~ "^/\\* =+ " s "\\. " { print NR; exit }' server.c)
    to=$(awk -v from="${from:-0}" 'NR > from && /^\/\* =+ / { print NR; exit }' server.c)
    at=$(awk -v name="$name" 'index($0, "static") == 1 && (index($0, " " name "(") || index($0, "*" name "(")) { line = NR }
        line && /^\{$/ { print line; exit } line && /\);[ \t]*(\/\*.*\*\/)?[ \t]*$/ { line = 0 }' server.c)
    [ -n "$from" ] && [ -n "$to" ] && [ -n "$at" ] && [ "$at" -gt "$from" ] && [ "$at" -lt "$to" ]
    check "server.c: the prototype of $name says section $sect, where it is" $? \
        "defined at line ${at:-none}; section $sect: ${from:-none}-${to:-none}"
done < <(head -n "$end" server.c | awk '
    /^static / { decl = ""; on = 1 }
    on { decl = decl " " $0 }
    on && /\);/ { on = 0
        if (match(decl, /\/\* section [0-9A-F]+/)) {
            s = substr(decl, RSTART + 11, RLENGTH - 11)
            d = decl; sub(/\(.*/, "", d); n = split(d, w, /[ *]+/)
            print w[n], s } }')

# (e) No function of part 2 is named in part 1 but part2_route.
p2_from=$(grep -nE '^/\*.*PART 2.*\*/$' server.c | head -n 1 | cut -d: -f1)
p2_to=$(grep -nE '^/\*.*MACHINERY.*\*/$' server.c | head -n 1 | cut -d: -f1)
named=$(comm -12 \
    <(sed -n "${p2_from:-1},${p2_to:-1}p" server.c |
        sed -nE 's/^static [^(=]*[ *]([a-z_0-9]+)\(.*[^;]$/\1/p' | sort -u | grep -vx part2_route) \
    <(head -n "$end" server.c | grep -oE '\b[a-z_0-9]+\(' | tr -d '(' | sort -u))
[ -n "$p2_from" ] && [ -z "$named" ]
check "server.c: part 1 names no function of part 2 but part2_route" $? "named: ${named//$'\n'/, }"

words=$(wc -w <README.md)
[ "$words" -le 3000 ]
check "README.md: $words words (at most 3,000)" $? "move details to docs/"

exit "$failed"
