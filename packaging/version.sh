#!/bin/sh
# Prints the package version: the v-tag (v1.2.3 -> 1.2.3, with +gitN.SHA
# when commits follow it), else 0.0.0~gitDATE.SHA, which sorts below any
# release in dpkg and rpm alike.
set -e
if v=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
	echo "$v" | sed -e 's/^v//' -e 's/-\([0-9]*\)-g\([0-9a-f]*\)$/+git\1.\2/' -e 's/-/~/g'
	exit 0
fi
date=$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date -u +%Y%m%d)
sha=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
echo "0.0.0~git$date.$sha"
