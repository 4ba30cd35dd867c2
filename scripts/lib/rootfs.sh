# shellcheck shell=bash
# Helpers to stage a root filesystem for a FROM-scratch image from this host's files (no
# registry is needed). Sourced by scripts/build-sandbox-image and scripts/build-daemon-image.

# copy_with_libs SRC ROOTFS DEST: copies the executable SRC to ROOTFS/DEST (debug symbols
# stripped), with the dynamic loader and every shared library it links, at their paths.
copy_with_libs() {
  local src="$1" rootfs="$2" dest="$3"
  mkdir -p "$rootfs$(dirname "$dest")"
  strip --strip-debug -o "$rootfs$dest" "$src"
  copy_libs_of "$src" "$rootfs"
}

# copy_libs_of FILE ROOTFS: the shared libraries FILE links (ldd), at their paths.
copy_libs_of() {
  local file="$1" rootfs="$2" lib
  ldd "$file" 2>/dev/null | awk '/=>/ {print $3} !/=>/ && $1 ~ /^\// {print $1}' | while read -r lib; do
    [[ -f "$lib" ]] || continue
    [[ -f "$rootfs$lib" ]] && continue
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
}

# copy_ca_bundle ROOTFS: the host's CA bundle, for HTTPS to real AWS endpoints.
copy_ca_bundle() {
  local rootfs="$1" ca
  mkdir -p "$rootfs/etc/ssl/certs"
  for ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [[ -f "$ca" ]]; then cp -L "$ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"; return; fi
  done
  echo "no CA bundle found on this host" >&2
  return 69
}

# copy_busybox ROOTFS APPLET...: a static busybox at /bin/busybox with the applets linked.
copy_busybox() {
  local rootfs="$1" applet
  shift
  command -v busybox >/dev/null || { echo "busybox is missing: apt-get install busybox-static" >&2; return 69; }
  mkdir -p "$rootfs/bin"
  cp "$(command -v busybox)" "$rootfs/bin/busybox"
  for applet in "$@"; do ln -sf busybox "$rootfs/bin/$applet"; done
}

# build_autoheal PROFILE: builds target/PROFILE/autoheal (debug or release); prints its path.
build_autoheal() {
  local profile="$1"
  if [[ $profile == release ]]; then cargo build --release --quiet; else cargo build --quiet; fi
  echo "$ROOT/target/$profile/autoheal"
}
