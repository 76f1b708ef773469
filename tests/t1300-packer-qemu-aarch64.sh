#!/usr/bin/env bash
# The local image pipeline for aarch64 (`ARCH=aarch64 make image`) on any
# host: t1200's checks with PIPELINE_ARCH=aarch64. The arm64 base image is
# built through qemu-user-static, both stages and the boot proof run on
# qemu-system-aarch64 -M virt (TCG here), and stage 2 installs the caches'
# aarch64-linux bundle (Debian's arm64 PostgreSQL 15) because the guest's
# uname -m says aarch64. The slowest test: `make check-arm64` runs it.
# shellcheck disable=SC2034 # t1200 reads it
PIPELINE_ARCH=aarch64
. "$(dirname "$0")/t1200-packer-qemu-pipeline.sh"
