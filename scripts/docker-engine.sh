#!/usr/bin/env bash
# A private Docker engine for the quickstart, for machines where none runs (a fresh VM, CI):
#   scripts/docker-engine.sh start DIR   prints the DOCKER_HOST to use (unix://DIR/docker.sock)
#   scripts/docker-engine.sh stop DIR
# dockerd runs as root with its own socket, data root, exec root and pid file, no iptables and no
# bridge (containers use --network host). overlay2 is tried first because it is much faster;
# vfs is the fallback that works everywhere (nested overlays often do not).
set -euo pipefail

action=${1:?usage: docker-engine.sh start|stop DIR}
root=$(mkdir -p "${2:?usage: docker-engine.sh start|stop DIR}" && cd "$2" && pwd)
sock="$root/docker.sock"

stop_engine() {
    local pidfile="$root/dockerd.pid"
    if [[ -f $pidfile ]]; then
        local pid
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    fi
    # dockerd leaves its network namespace mounted below the exec root after it exits.
    grep -o " $root/[^ ]*" /proc/mounts | sort -r | while read -r point; do umount -l "$point" 2>/dev/null || true; done
}

engine_works() {
    # overlay2 may start and still fail at the first mount: import a one-file image and copy out of it.
    local probe="$root/probe"
    mkdir -p "$probe" && printf ok > "$probe/probe"
    tar -C "$probe" -cf "$root/probe.tar" probe
    DOCKER_HOST="unix://$sock" docker import "$root/probe.tar" edgekit-probe:1 >/dev/null 2>&1 || return 1
    local id
    id=$(DOCKER_HOST="unix://$sock" docker create --network none edgekit-probe:1 /probe 2>/dev/null) || return 1
    DOCKER_HOST="unix://$sock" docker cp "$id:/probe" "$root/probe.out" >/dev/null 2>&1
    local ok=$?
    DOCKER_HOST="unix://$sock" docker rm -f "$id" >/dev/null 2>&1 || true
    DOCKER_HOST="unix://$sock" docker rmi -f edgekit-probe:1 >/dev/null 2>&1 || true
    return $ok
}

start_engine() {
    local driver=$1
    dockerd --storage-driver="$driver" --iptables=false --ip6tables=false --bridge=none \
        --host "unix://$sock" --data-root "$root/data-$driver" --exec-root "$root/exec" \
        --pidfile "$root/dockerd.pid" >"$root/dockerd.log" 2>&1 &
    for _ in $(seq 1 300); do
        if DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1; then return 0; fi
        kill -0 $! 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

case $action in
    start)
        if [[ $(id -u) -ne 0 ]]; then echo "docker-engine.sh: starting a private dockerd needs root" >&2; exit 1; fi
        command -v dockerd >/dev/null || { echo "docker-engine.sh: dockerd is not installed (apt-get install docker.io)" >&2; exit 1; }
        if DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1; then echo "unix://$sock"; exit 0; fi
        for driver in overlay2 vfs; do
            if start_engine "$driver" && engine_works; then echo "unix://$sock"; exit 0; fi
            stop_engine
        done
        echo "docker-engine.sh: dockerd started with neither overlay2 nor vfs; see $root/dockerd.log" >&2
        exit 1
        ;;
    stop) stop_engine ;;
    *) echo "usage: docker-engine.sh start|stop DIR" >&2; exit 2 ;;
esac
