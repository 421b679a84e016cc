#!/bin/sh
# /init of jitprobe's guest initramfs (busybox ash). Mounts the kernel filesystems, loads the
# 9p modules shipped in the initramfs, mounts the read-only `modules` share over
# /lib/modules/<version> (so modprobe reaches every module of the kernel) and the `host` share at
# /mnt/host when QEMU offers it, prints the readiness marker with the token from the kernel command
# line, then hands the console to an interactive shell.
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
exec </dev/console >/dev/console 2>&1

# Numbered so that the glob's order is the dependency order.
for module in /lib/jitprobe-modules/*.ko; do
    insmod "$module" || echo "jitprobe-init: insmod $module failed"
done

has_9p_tag() {
    for tagfile in /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag; do
        [ "$(tr -d '\000' < "$tagfile" 2>/dev/null)" = "$1" ] && return 0
    done
    return 1
}

version=$(uname -r)
mkdir -p "/lib/modules/$version"
if has_9p_tag modules; then
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro modules "/lib/modules/$version" \
        || echo "jitprobe-init: mounting the modules share failed"
else
    echo "jitprobe-init: no 'modules' 9p share; modprobe will not find modules"
fi
if has_9p_tag host; then
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 host /mnt/host \
        || echo "jitprobe-init: mounting the host share failed"
fi

token=
for word in $(cat /proc/cmdline); do
    case "$word" in
        jitprobe.token=*) token=${word#jitprobe.token=} ;;
    esac
done
cd /root
echo "JITPROBE-READY-$token"
setsid cttyhack sh
poweroff -f
