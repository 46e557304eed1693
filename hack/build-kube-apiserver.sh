#!/bin/sh
# build-kube-apiserver.sh VERSION OUT: builds kube-apiserver VERSION (v1.37.2) from
# the k8s.io/kubernetes module into the file OUT.
#
# `go install k8s.io/kubernetes/cmd/kube-apiserver@VERSION` refuses a module
# with replace directives, and kubernetes replaces every k8s.io staging
# module with its ./staging copy. So a throwaway main module requires
# k8s.io/kubernetes and points each of those replaces at the staging
# module's published release instead (v1.X.Y's staging modules are v0.X.Y).
set -eu
version=$1
out=$2
go=${GO:-go}
staging=v0.${version#v1.}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
modfile=$("$go" mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)",*$/\1/p')
goline=$(sed -n 's/^go \(.*\)$/\1/p' "$modfile" | head -n1)
{
	echo "module interlock.test/kubeapiserver"
	echo
	echo "go $goline"
	echo
	echo "require k8s.io/kubernetes $version"
	echo
	echo "replace ("
	# The replace block of kubernetes' go.mod, each ./staging path swapped
	# for the published module at the staging version.
	sed -n '/^replace (/,/^)/s#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#\t\1 => \1 '"$staging"'#p' "$modfile"
	echo ")"
} >go.mod
printf 'package main\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n' >tools.go
# Only the modules kube-apiserver's packages need are fetched: the replace
# targets of the others (sample-apiserver, ...) are never looked up.
"$go" mod tidy
mkdir -p "$(dirname "$out")"
# The version kubernetes' own build stamps (else it reports v0.0.0-master).
minor=$(echo "$version" | cut -d. -f2)
pkg=k8s.io/component-base/version
CGO_ENABLED=0 "$go" build -trimpath \
	-ldflags "-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" \
	-o "$out.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$out.tmp" "$out"
