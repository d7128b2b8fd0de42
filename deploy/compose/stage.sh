#!/bin/sh
# stage.sh OUT: prepare the build context of docker-compose.yml's images in
# OUT (make cluster-stage runs it). Every image is FROM scratch, so
# everything an image holds is staged here as a root filesystem tree:
#   base/     busybox (health checks, a shell for debugging), /tmp, /etc
#   etcd/     the etcd server (go.etcd.io/etcd/server/v3 at jobx's version)
#   nsq/      nsqd and nsqlookupd (deploy/tools pins nsq v1.3.0)
#   jobx/     jobx and jobx-agent
#   runtime/  containerd, its runc shim and runc, with the shared libraries
#             ldd lists (the runner starts its own containerd)
#   images/   the sandbox images (python, node, sh, generic), built by
#             `jobx images build` from this host's interpreters
# Go binaries are static (CGO_ENABLED=0). Re-running is cheap: go builds and
# image builds are cached.
set -eu
out=${1:?usage: stage.sh OUT}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
GO=${GO:-go}
export CGO_ENABLED=0

mkdir -p "$out"
out=$(cd "$out" && pwd)
for d in base etcd nsq jobx runtime; do
	rm -rf "$out/$d"
	mkdir -p "$out/$d"
done

need() {
	command -v "$1" >/dev/null 2>&1 || { echo "stage.sh: $1 not found ($2)" >&2; exit 1; }
}
need busybox "apt-get install busybox-static"
need containerd "apt-get install containerd"
need containerd-shim-runc-v2 "apt-get install containerd"
need runc "apt-get install runc"

# base: busybox and the applets the health checks and a debugging shell use.
mkdir -p "$out/base/bin" "$out/base/tmp" "$out/base/etc" "$out/base/run"
chmod 1777 "$out/base/tmp"
cp "$(readlink -f "$(command -v busybox)")" "$out/base/bin/busybox"
for a in sh wget ls cat ps mkdir; do ln -s busybox "$out/base/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$out/base/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$out/base/etc/group"

mkdir -p "$out/etcd/bin" "$out/nsq/bin" "$out/jobx/bin"
(cd "$top" && $GO build -trimpath -o "$out/etcd/bin/etcd" go.etcd.io/etcd/server/v3)
(cd "$here/../tools" && $GO build -trimpath -o "$out/nsq/bin/nsqd" github.com/nsqio/nsq/apps/nsqd &&
	$GO build -trimpath -o "$out/nsq/bin/nsqlookupd" github.com/nsqio/nsq/apps/nsqlookupd)
(cd "$top" && $GO build -trimpath -o "$out/jobx/bin/jobx" ./cmd/jobx && $GO build -trimpath -o "$out/jobx/bin/jobx-agent" ./cmd/jobx-agent)

# runtime: Debian's containerd and runc are dynamically linked; copy the
# libraries they need to the same paths.
mkdir -p "$out/runtime/usr/bin"
for b in containerd containerd-shim-runc-v2 runc; do
	p=$(readlink -f "$(command -v $b)")
	cp "$p" "$out/runtime/usr/bin/$b"
	ldd "$p" | awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}' | while read -r lib; do
		dest="$out/runtime$lib"
		mkdir -p "$(dirname "$dest")"
		cp -L "$lib" "$dest"
	done
done

# images: the sandbox images, built from this host's files (cached by the
# store, so unchanged inputs are not rebuilt).
mkdir -p "$out/images/var/lib/jobx"
"$top/bin/jobx" images build --images-dir "$out/images/var/lib/jobx/images" >/dev/null

cp "$here"/Dockerfile.* "$out/"
echo "staged the cluster's build context in $out"
