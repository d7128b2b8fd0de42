#!/bin/sh
# Sum each key's counts (keys are JSON strings, values integers).
#
# **
# handler_type: reducer
. "$JOBX_SH_HELPERS"
while IFS= read -r line; do
	key=${line#\[}
	key=${key%%,*}
	values=${line#*,\[}
	values=${values%\]\]}
	total=0
	for v in $(printf '%s' "$values" | tr ',' ' '); do
		total=$((total + v))
	done
	jobx_emit "$key" "$total"
done
