# Stand-ins for OpenWrt's /lib/functions.sh (UCI) and /lib/functions/procd.sh, enough to
# source an init script and call its start_service outside OpenWrt. Every procd_* call is
# appended to $PROCD_LOG, one line per call: "<function> <arg>|<arg>|...". UCI is read from
# $UCI_FILE with the same variable layout as OpenWrt's config_load (CONFIG_<sec>_<opt>,
# lists as _LENGTH and _ITEM<n>). POSIX sh: runs under dash and busybox ash.
# shellcheck shell=dash

: "${PROCD_LOG:?}" "${UCI_FILE:?}"

# --- UCI ---------------------------------------------------------------------
config_load() {
	# One shell assignment per option; values are single-quoted for eval.
	eval "$(awk '
		function unquote(s) {
			sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s)
			if (s ~ /^\x27.*\x27$/ || s ~ /^".*"$/) s = substr(s, 2, length(s) - 2)
			return s
		}
		function shq(s) { gsub(/\x27/, "\x27\\\x27\x27", s); return "\x27" s "\x27" }
		/^[ \t]*(#|$)/ { next }
		$1 == "config" {
			n++; sec = ($3 == "") ? "cfg" n : unquote($3)
			print "CONFIG_" sec "_TYPE=" shq(unquote($2)); next
		}
		$1 == "option" || $1 == "list" {
			line = $0; sub(/^[ \t]*(option|list)[ \t]+[^ \t]+[ \t]+/, "", line)
			key = $2; val = unquote(line)
			if ($1 == "option") { print "CONFIG_" sec "_" key "=" shq(val) }
			else {
				len[sec, key]++
				print "CONFIG_" sec "_" key "_ITEM" len[sec, key] "=" shq(val)
				print "CONFIG_" sec "_" key "_LENGTH=" len[sec, key]
			}
		}' "$UCI_FILE")"
}

config_get() {
	# config_get VAR SECTION OPTION [DEFAULT]
	eval "_v=\${CONFIG_$2_$3-}"
	# shellcheck disable=SC2154
	[ -n "$_v" ] || _v=${4-}
	eval "$1=\$_v"
}

config_get_bool() {
	local _b
	config_get _b "$2" "$3" "${4-0}"
	case $_b in
	1 | on | true | yes | enabled) _b=1 ;;
	0 | off | false | no | disabled) _b=0 ;;
	*) _b=${4-0} ;;
	esac
	eval "$1=\$_b"
}

config_list_foreach() {
	# As OpenWrt's: the callback's exit status is ignored.
	local section="$1" option="$2" function="$3" len c=1 val
	shift 3
	config_get len "$section" "${option}_LENGTH"
	[ -n "$len" ] || return 0
	while [ "$c" -le "$len" ]; do
		config_get val "$section" "${option}_ITEM$c"
		"$function" "$val" "$@"
		c=$((c + 1))
	done
}

# --- procd -------------------------------------------------------------------
_procd_log() {
	local f="$1" line=
	shift
	for a in "$@"; do line="$line${line:+|}$a"; done
	printf '%s %s\n' "$f" "$line" >>"$PROCD_LOG"
}
procd_open_instance() { _procd_log procd_open_instance "$@"; }
procd_close_instance() { _procd_log procd_close_instance "$@"; }
procd_set_param() { _procd_log procd_set_param "$@"; }
procd_append_param() { _procd_log procd_append_param "$@"; }
procd_add_reload_trigger() { _procd_log procd_add_reload_trigger "$@"; }
