# bash completion for devbox; the words come from devbox itself (DEVBOX_COMPLETE=bash).
_devbox_complete() {
    local IFS=$'\013'
    local line=${COMP_LINE:0:COMP_POINT} piece rest glue= i last
    local -a words=()
    # COMP_WORDS holds bash's pieces: `debian:tri` is `debian` `:` `tri`. Pieces that touch
    # across a `:` or `=` are glued back into the word that was typed.
    for ((i = 0; i < COMP_CWORD; i++)); do
        rest=${line#"${line%%[![:space:]]*}"}
        piece=${COMP_WORDS[i]}
        if [[ $rest != "$piece"* ]]; then
            # Not the line bash split: fall back to its pieces as they are.
            words=("${COMP_WORDS[@]:0:COMP_CWORD}")
            line=
            break
        fi
        last=$((${#words[@]} - 1))
        if ((last >= 0)) && [[ $rest == "$line" ]] &&
            [[ ${words[last]} == *[:=] || $piece == [:=]* ]]; then
            words[last]+=$piece
        else
            words+=("$piece")
        fi
        line=${rest:${#piece}}
    done
    # The word under the cursor: the pieces glued before it, then what bash will replace ($2).
    # Right after a `:`, bash's piece is the `:` itself while $2 is empty.
    rest=${line#"${line%%[![:space:]]*}"}
    last=$((${#words[@]} - 1))
    if [[ -n $line && $rest == "$line" ]] && ((last >= 0)) &&
        [[ ${words[last]} == *[:=] || $rest == [:=]* ]]; then
        glue=${words[last]}
        unset "words[last]"
    fi
    if [[ -n $rest && -z ${rest//[:=]/} ]]; then
        glue+=$rest
    fi
    words+=("$glue$2")
    local space=true
    if compopt +o nospace 2>/dev/null; then
        space=false
    fi
    local reply
    reply=$(
        _CLAP_IFS="$IFS" \
        _CLAP_COMPLETE_INDEX=$((${#words[@]} - 1)) \
        _CLAP_COMPLETE_COMP_TYPE="$COMP_TYPE" \
        _CLAP_COMPLETE_SPACE="$space" \
        DEVBOX_COMPLETE=bash \
        "devbox" -- "${words[@]}"
    ) || { unset COMPREPLY; return; }
    COMPREPLY=()
    local c
    for c in $reply; do
        # Bash replaces only the piece after the last break: hand it that piece.
        [[ $c == "$glue"* ]] && COMPREPLY+=("${c:${#glue}}")
    done
    if [[ $space == false && ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} =~ [=/:]$ ]]; then
        compopt -o nospace
    fi
}
complete -o nospace -o bashdefault -o nosort -F _devbox_complete devbox 2>/dev/null ||
    complete -o nospace -o bashdefault -F _devbox_complete devbox
