#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Version 2's tests, run against a live pricer: test-v2.sh REQUEST-FIFO REPLY-FIFO.
# The bulk discount starts at 10 items; the service counts every order it served.
set -uo pipefail
req=$1 rep=$2
exec 3>"$req" 4<"$rep"
failed=0 last=0

ask() {
	local want=$2 line price served
	echo "$1" >&3
	IFS= read -r -t 10 line <&4 || { echo "FAIL: no answer for $1"; failed=1; return; }
	price=$(awk '{ print $4 }' <<<"$line") served=$(awk '{ print $6 }' <<<"$line")
	if [ "$price" != "$want" ]; then
		echo "FAIL: price of $1 is $price, want $want ($line)"
		failed=1
	elif [ "$served" -le "$last" ]; then
		echo "FAIL: the served count went from $last to $served ($line)"
		failed=1
	else
		echo "ok: $line"
	fi
	last=$served
}

ask 1 100
ask 9 900
ask 10 900
ask 20 1800
exit $failed
