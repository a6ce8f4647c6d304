#!/usr/bin/env bash
# Installs PoCL 6 (a real OpenCL 3.0 runtime for the CPU, with the generic address space that ILGPU's
# OpenCL backend needs) on Debian 12 bookworm, built from Debian's trixie *source* package against
# bookworm's LLVM/Clang 15. The machine's apt sources are not changed: the trixie deb-src entry lives
# in a private apt configuration under $POCL_WORK. Debian's own PoCL 3.1 (no generic address space) is
# removed, because both runtimes link libLLVM-15 and one process that loads both aborts with
# "Option 'add-wi-metadata' registered more than once".
#
# Idempotent: a stamp file in the prefix makes a second run only re-check the device (a second or so).
# Exit status 0 only when an OpenCL device reports the generic address space; otherwise non-zero with
# the reason on stderr.
#
#   POCL_PREFIX  install prefix          (default /opt/pocl6)
#   POCL_WORK    build folder            (default /var/tmp/kernels-pocl6-build; removed after a build)
#   POCL_JOBS    parallel build jobs     (default: nproc)
set -euo pipefail
trap 'echo "install-pocl6: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

prefix=${POCL_PREFIX:-/opt/pocl6}
work=${POCL_WORK:-/var/tmp/kernels-pocl6-build}
jobs=${POCL_JOBS:-$(nproc)}
icd=/etc/OpenCL/vendors/kernels-pocl6.icd
stamp="$prefix/.kernels-pocl6-installed"

say() { echo "install-pocl6: $*" >&2; }
die() { say "FAILED: $*"; exit 1; }

# The check that the runtime is usable: clinfo through the ICD loader, only our ICD.
check() {
  local out
  out=$(OCL_ICD_VENDORS="$icd" clinfo 2>&1) || { echo "$out" | tail -n 5 >&2; return 1; }
  echo "$out" | grep -E '^\s*(Platform Version|Device Name|Generic address space support)' >&2 || true
  echo "$out" | grep -Eq 'Generic address space support\s+Yes'
}

[ "$(id -u)" = 0 ] || die "needs root (apt-get and /etc/OpenCL/vendors)"
command -v apt-get >/dev/null || die "needs apt-get (Debian 12 bookworm)"

# Debian's PoCL 3.1 must not be registered beside PoCL 6 (see above).
remove_debian_pocl() {
  if dpkg-query -W -f='${Status}' pocl-opencl-icd 2>/dev/null | grep -q 'install ok installed'; then
    say "removing Debian's pocl-opencl-icd (PoCL 3.1: no generic address space, clashes with PoCL 6)"
    DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq pocl-opencl-icd >/dev/null
  fi
}

if [ -f "$stamp" ] && [ -f "$icd" ]; then
  remove_debian_pocl
  if check; then say "already installed in $prefix ($(cat "$stamp"))"; exit 0; fi
  say "installed runtime in $prefix fails its check; rebuilding"
  rm -f "$stamp"
fi

t0=$(date +%s)
say "installing build dependencies (bookworm)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || die "apt-get update"
apt-get install -y -qq --no-install-recommends \
  build-essential dpkg-dev cmake ninja-build pkg-config ca-certificates debian-archive-keyring \
  llvm-15-dev clang-15 libclang-15-dev libclang-cpp15-dev libhwloc-dev \
  ocl-icd-dev ocl-icd-opencl-dev ocl-icd-libopencl1 opencl-c-headers clinfo >/dev/null \
  || die "apt-get install of the build dependencies"
remove_debian_pocl
t1=$(date +%s)

say "fetching PoCL's trixie source package (private apt configuration, system sources untouched)"
rm -rf "$work"
mkdir -p "$work"/apt/lists/partial "$work"/apt/cache/archives/partial "$work"/apt/sources.list.d
cat > "$work/apt/sources.list" <<EOF
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
EOF
cat > "$work/apt/apt.conf" <<EOF
Dir::Etc::SourceList "$work/apt/sources.list";
Dir::Etc::SourceParts "$work/apt/sources.list.d";
Dir::State::Lists "$work/apt/lists";
Dir::Cache "$work/apt/cache";
EOF
(
  cd "$work"
  export APT_CONFIG="$work/apt/apt.conf"
  apt-get update -qq
  apt-get source -qq --download-only pocl
) >"$work/fetch.log" 2>&1 || { tail -n 20 "$work/fetch.log" >&2; die "fetching the pocl source package from trixie"; }
dsc=
for candidate in "$work"/pocl_6.*.dsc; do
  [ -e "$candidate" ] && { dsc=$candidate; break; }
done
[ -n "$dsc" ] || die "no pocl_6.* source package in trixie (found: $(cd "$work" && echo *.dsc))"
# The files are hash-checked against the signed Sources index; dpkg-source's missing-key warning is harmless.
dpkg-source -x "$dsc" "$work/src" >"$work/extract.log" 2>&1 || { tail -n 20 "$work/extract.log" >&2; die "dpkg-source -x $dsc"; }
t2=$(date +%s)

# LLVM 15 does not know recent CPUs by name: give it the x86-64 level the machine has.
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has() { [[ " $flags " == *" $1 "* ]]; }
if has avx2 && has fma && has bmi2 && has movbe; then cpu=x86-64-v3
elif has sse4_2 && has popcnt && has ssse3; then cpu=x86-64-v2
else cpu=x86-64; fi
say "configuring (CPU driver only, LLC_HOST_CPU=$cpu) and building with $jobs jobs"
cmake -S "$work/src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$prefix" -DWITH_LLVM_CONFIG=/usr/bin/llvm-config-15 -DLLC_HOST_CPU="$cpu" \
  -DENABLE_ICD=ON -DPOCL_ICD_ABSOLUTE_PATH=ON -DENABLE_HOST_CPU_DEVICES=ON -DENABLE_LOADABLE_DRIVERS=OFF \
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DENABLE_TESTS=OFF -DENABLE_EXAMPLES=OFF -DENABLE_POCLCC=OFF \
  -DENABLE_SPIRV=OFF -DINSTALL_OPENCL_HEADERS=OFF >"$work/configure.log" 2>&1 \
  || { tail -n 30 "$work/configure.log" >&2; die "cmake configure"; }
ninja -C "$work/build" -j "$jobs" install >"$work/build.log" 2>&1 \
  || { tail -n 30 "$work/build.log" >&2; die "ninja build/install"; }
t3=$(date +%s)

lib=
for candidate in "$prefix"/lib*/libpocl.so.2 "$prefix"/lib/*/libpocl.so.2; do
  [ -e "$candidate" ] && { lib=$candidate; break; }
done
[ -n "$lib" ] || die "libpocl.so.2 not found under $prefix"
mkdir -p /etc/OpenCL/vendors
echo "$lib" > "$icd"
check || die "the installed PoCL does not report the generic address space (clinfo above)"
version=$(basename "$dsc" .dsc)
echo "$version LLC_HOST_CPU=$cpu built $(date -u +%FT%TZ)" > "$stamp"
rm -rf "$work"
say "installed $version in $prefix, ICD $icd: apt $((t1 - t0)) s, source $((t2 - t1)) s, build $((t3 - t2)) s"
