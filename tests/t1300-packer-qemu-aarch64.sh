#!/usr/bin/env bash
# The local image pipeline for aarch64 beside x86_64
# (`ARCH="x86_64 aarch64" make image`) on any host: t1200's checks with
# PIPELINE_ARCH="x86_64 aarch64". Each stage is one `packer build
# -parallel-builds` holding both arches' builds; the arm64 base image is
# built through qemu-user-static, the aarch64 VMs run on
# qemu-system-aarch64 -M virt (TCG here), and aarch64's stage 2 installs
# the caches' aarch64-linux bundle (Debian's arm64 PostgreSQL 15) because
# the guest's uname -m says aarch64. Checked on top of t1200's per-arch
# checks: one packer run per stage for both arches, the runs overlapped,
# the manifest kept every build, and the aggregate index and gate cover
# all six reports. The slowest test: `make check-arm64` runs it.
# shellcheck disable=SC2034 # t1200 reads it
PIPELINE_ARCH="x86_64 aarch64"
. "$(dirname "$0")/t1200-packer-qemu-pipeline.sh"
