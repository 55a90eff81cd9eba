#!/bin/sh
# Generalize this machine before it is captured, so every instance booted from
# the image gets its own identity. One script, not one Ansible task per step:
# under emulation each task costs 5-10 s of Python start-up on the guest.
# Usage: seal.sh "<steps to skip, space separated>" "<build key base64 blob>"
set -eu
SKIP=" ${1:-} "
BUILD_KEY_BLOB="${2:-}"

want() {
  case "$SKIP" in *" $1 "*) echo "seal: skip $1"; return 1 ;; esac
  echo "seal: $1"
}

if want cloud_init && command -v cloud-init >/dev/null 2>&1; then
  cloud-init clean --logs --seed || echo "seal: cloud-init clean failed (ignored)"
fi

if want machine_id; then
  : > /etc/machine-id
  [ -L /var/lib/dbus/machine-id ] || rm -f /var/lib/dbus/machine-id
  rm -f /var/lib/systemd/random-seed
fi

if want ssh_host_keys; then
  rm -f /etc/ssh/ssh_host_*
fi

if want build_key && [ -n "$BUILD_KEY_BLOB" ] && [ -f /root/.ssh/authorized_keys ]; then
  keys=/root/.ssh/authorized_keys
  grep -vF -- "$BUILD_KEY_BLOB" "$keys" > "$keys.imgpipe" || true
  if grep -q '[^[:space:]]' "$keys.imgpipe"; then
    cat "$keys.imgpipe" > "$keys"
  else
    rm -f "$keys"
  fi
  rm -f "$keys.imgpipe"
fi

if want shell_history; then
  rm -f /root/.bash_history /root/.lesshst /root/.viminfo /root/.python_history /home/*/.bash_history
fi

if want package_cache; then
  command -v apt-get >/dev/null 2>&1 && apt-get clean
  rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
fi

if want dhcp_leases; then
  rm -rf /var/lib/dhcp/* /var/lib/systemd/network/* /run/systemd/netif/leases/*
fi

if want temp_files; then
  find /tmp /var/tmp -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  # Ansible's own remote temp dir; this script runs from it, which is fine once it is open.
  rm -rf /root/.ansible
fi

if want logs; then
  journalctl --rotate >/dev/null 2>&1 || true
  journalctl --vacuum-time=1s >/dev/null 2>&1 || true
  rm -rf /var/log/journal/*/*
  find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -delete
  find /var/log -type f -exec truncate -s 0 {} +
fi

if want trim; then
  sync
  fstrim --all --verbose || echo "seal: fstrim failed (ignored; the image may be larger)"
fi
echo "seal: done"
