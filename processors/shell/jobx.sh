# jobx helpers for POSIX sh handlers. Source them with
#   . "$JOBX_SH_HELPERS"
#
# jobx_return              write a mapper's directive: return its pairs
# jobx_map STEP            write a mapper's directive: map its pairs to STEP
# jobx_emit KEY VALUE      write a pair; KEY and VALUE are JSON texts
# jobx_string TEXT         print TEXT as a JSON string
# jobx_pair_key LINE       print the key of an input line [key, value]
# jobx_pair_value LINE     print the value of an input line
# jobx_log MESSAGE...      write to the log (stderr)
# jobx_pair_key and jobx_pair_value handle scalar keys (numbers, strings
# without escaped quotes); use jq for anything else.

jobx_string() {
	printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/	/\\t/g' -e 's/\r/\\r/g' |
		awk 'BEGIN { ORS = "" } NR > 1 { print "\\n" } { print } END { }' |
		{ printf '"'; cat; printf '"'; }
}

jobx_return() {
	printf '{"jobx":"return"}\n'
}

jobx_map() {
	printf '{"jobx":"map","step":%s}\n' "$(jobx_string "$1")"
}

jobx_emit() {
	printf '[%s,%s]\n' "$1" "$2"
}

jobx_log() {
	printf '%s\n' "$*" >&2
}

_jobx_trim() {
	_jobx_t=$1
	_jobx_t=${_jobx_t#"${_jobx_t%%[! ]*}"}
	_jobx_t=${_jobx_t%"${_jobx_t##*[! ]}"}
	printf '%s' "$_jobx_t"
}

jobx_pair_key() {
	_jobx_l=$(_jobx_trim "$1")
	_jobx_l=$(_jobx_trim "${_jobx_l#\[}")
	case $_jobx_l in
	\"*)
		_jobx_r=${_jobx_l#\"}
		printf '"%s"' "${_jobx_r%%\"*}"
		;;
	*) _jobx_trim "${_jobx_l%%,*}" ;;
	esac
}

jobx_pair_value() {
	_jobx_l=$(_jobx_trim "$1")
	_jobx_l=$(_jobx_trim "${_jobx_l#\[}")
	case $_jobx_l in
	\"*)
		_jobx_r=${_jobx_l#\"}
		_jobx_r=${_jobx_r#*\"}
		_jobx_r=${_jobx_r#*,}
		;;
	*) _jobx_r=${_jobx_l#*,} ;;
	esac
	_jobx_r=$(_jobx_trim "$_jobx_r")
	_jobx_trim "${_jobx_r%\]}"
}

# Sessions: the private session of the map invocation (read-write for its
# mapper and combiner, read-only for its reducer), through the runner's
# services endpoint. They need curl.
_jobx_call() {
	_jobx_sock=${JOBX_SERVICES#unix:}
	if [ -z "$JOBX_SERVICES" ] || [ "$_jobx_sock" = "$JOBX_SERVICES" ]; then
		echo "jobx: the services endpoint is not available: JOBX_SERVICES is not set" >&2
		return 2
	fi
	curl -sS --fail-with-body --unix-socket "$_jobx_sock" -H "Authorization: Bearer $JOBX_TOKEN" \
		-H 'Content-Type: application/json' "$@"
}

# jobx_session_get KEY: prints the JSON value; fails when unset.
jobx_session_get() { _jobx_call "http://jobx/v1/session/$1"; }

# jobx_session_set KEY JSON_VALUE: fails, naming the limit, when the value
# is over the session value limit (kvmodel.MaxSessionValueBytes). The value
# goes through a pipe, not curl's arguments, which hold at most 128 KiB.
_jobx_session_value_limit=1048576
jobx_session_set() {
	_jobx_n=$(($(printf '%s' "$2" | wc -c)))
	if [ "$_jobx_n" -gt "$_jobx_session_value_limit" ]; then
		echo "jobx: session value of key \"$1\" is $_jobx_n bytes, over the $_jobx_session_value_limit-byte session value limit" >&2
		return 1
	fi
	_jobx_out=$(printf '%s' "$2" | _jobx_call -X PUT --data-binary @- "http://jobx/v1/session/$1") || {
		printf 'jobx: %s\n' "$_jobx_out" >&2
		return 1
	}
}

# jobx_session_list: prints the session as a JSON array of [key, value].
jobx_session_list() { _jobx_call "http://jobx/v1/session"; }
