# Sourced by scripts/up and scripts/test: install what building Asepsis needs from Debian.
# The face scan decodes HEIF/HEIC and AVIF with libheif (libheif-dev, found by pkg-config), and
# JPEG with libjpeg-turbo, which the turbojpeg crate builds from its own source (cmake, nasm).

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$0" "$*" >&2; exit 1; }

apt_updated=""
apt_install() {
  command -v apt-get >/dev/null || die "cannot install $*: no apt-get on this machine; install it by hand"
  if [ -z "$apt_updated" ]; then apt-get update -qq || die "apt-get update failed"; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

ensure_build_deps() {
  if ! command -v pkg-config >/dev/null || ! pkg-config --exists 'libheif >= 1.14.2'; then
    say "installing libheif-dev and pkg-config (HEIF/AVIF decoding for the face scan)"
    apt_install libheif-dev pkg-config
  fi
  pkg-config --exists 'libheif >= 1.14.2' || die "libheif >= 1.14.2 is still missing after installing libheif-dev"
  if ! command -v cmake >/dev/null || ! command -v nasm >/dev/null; then
    say "installing cmake and nasm (libjpeg-turbo, built by the turbojpeg crate)"
    apt_install cmake nasm
  fi
  command -v cmake >/dev/null && command -v nasm >/dev/null || die "cmake or nasm is still missing after apt-get install"
}
